#!/usr/bin/env python3
"""Writes the image fixtures that VisionTests read: small source images in every supported format,
what PIL decodes them to, and what the reference preprocessing pipeline makes of them.

Run by hand with /usr/bin/python3 (Pillow 9.4 on libjpeg-turbo 2.1.5, numpy) and jpegtran on the PATH
(Debian's libjpeg-turbo-progs, for restart markers, 4:4:0 and arithmetic coding, which Pillow 9.4 cannot
write); CI never runs it, the committed files are what the tests read. Hugging Face transformers is not installable here, so the reference pipeline is
written out below from its documented behaviour (transformers 4.39, CLIPImageProcessor), step by step:

  PIL Image.open(path) [-> ImageOps.exif_transpose] -> .convert('RGB')
  -> expand2square (Parrot's 'pad': fill = int(mean * 255), original at ((long - short) // 2))
  -> resize: shortest edge to size (long side = int(size * long / short)), PIL BICUBIC, reducing_gap None
     (PIL returns a copy, no resampling, when the size does not change)
  -> centre crop: top = (h - crop_h) // 2, left = (w - crop_w) // 2; an image smaller than the crop is
     first placed in zeros at (ceil(dh / 2), ceil(dw / 2))
  -> rescale: float32(float64(v) * rescale_factor)
  -> normalise in float32: (x - float32(mean)) / float32(std)
  -> channels first, float32

manifest.json lists every file and what the tests check against it.
"""
import io
import json
import math
import os
import shutil
import subprocess

import numpy as np
from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "Parrot.Parrot.Tests", "Fixtures", "vision")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The real openai/clip-vit-large-patch14-336 preprocessor_config.json uses the old integer forms of size
# and crop_size; the others use the dictionary forms transformers writes today.
CONFIGS = {
    "clip336": {
        "crop_size": 336, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "resample": 3, "size": 336,
    },
    "s32": {
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 32},
    },
    # crop larger than the resized image: HF pads with zeros before rescaling
    "s20crop32": {
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 20},
    },
    # exact height/width, no crop, other mean/std, bilinear: a non-square [3, 30, 40] output
    "hw30x40": {
        "do_center_crop": False, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
        "rescale_factor": 0.00392156862745098, "size": {"height": 30, "width": 40},
    },
}


def synth(w, h, seed, noise=14.0, smooth=False):
    """Gradients, a sine, saturated blocks with sharp edges (bicubic overshoot must clip) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 110 * np.sin(x * 0.45 + y * 0.21)
    img = np.stack([r, g, b], -1)
    if smooth:
        noise_mask = (x < w / 4) & (y < h / 4)
        img += rng.normal(0, noise, img.shape) * noise_mask[..., None]
    else:
        img += rng.normal(0, noise, img.shape)
    block = (x > w * 0.55) & (x < w * 0.8) & (y > h * 0.2) & (y < h * 0.6)
    img[block] = [255, 0, 255]
    stripe = ((x.astype(int) // 2) % 2 == 0) & (y > h * 0.7)
    img[stripe] = [0, 0, 0]
    img[(y > h * 0.7) & ~stripe] = [255, 255, 255]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def expand2square(im, fill):
    w, h = im.size
    if w == h:
        return im
    side = max(w, h)
    out = Image.new(im.mode, (side, side), fill)
    out.paste(im, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return out


def hf_output_size(w, h, size):
    """(width, height) after resizing, as transformers' get_resize_output_image_size."""
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if "shortest_edge" in size:
        s = size["shortest_edge"]
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        return (s, new_long) if w <= h else (new_long, s)
    return size["width"], size["height"]


def hf_center_crop(arr, ch, cw):
    h, w = arr.shape[:2]
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
        return arr[top:top + ch, left:left + cw]
    nh, nw = max(ch, h), max(cw, w)
    padded = np.zeros((nh, nw, arr.shape[2]), arr.dtype)
    tp, lp = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
    padded[tp:tp + h, lp:lp + w] = arr
    top, left = top + tp, left + lp
    return padded[max(0, top):min(nh, top + ch), max(0, left):min(nw, left + cw)]


def reference(rgb_image, cfg, pad):
    im = rgb_image
    mean, std = cfg["image_mean"], cfg["image_std"]
    if pad:
        im = expand2square(im, tuple(int(m * 255) for m in mean))
    if cfg.get("do_resize", True):
        ow, oh = hf_output_size(im.width, im.height, cfg["size"])
        im = im.resize((ow, oh), resample=cfg.get("resample", 3), reducing_gap=None)
    arr = np.array(im)
    if cfg.get("do_center_crop", True):
        crop = cfg["crop_size"]
        ch, cw = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"])
        arr = hf_center_crop(arr, ch, cw)
    if cfg.get("do_rescale", True):
        arr = (arr.astype(np.float64) * cfg.get("rescale_factor", 1 / 255)).astype(np.float32)
    if cfg.get("do_normalize", True):
        arr = arr.astype(np.float32)
        arr = (arr - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(arr.astype(np.float32).transpose(2, 0, 1))


def exif_bytes(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def save(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    for name, cfg in CONFIGS.items():
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(cfg, f, indent=2)

    images = []  # (file name, exact decode expected?, has orientation, note)

    def add(name, data, exact, oriented=False, note="", keep_decoded=True):
        save(name, data)
        images.append({"file": name, "decode_exact": exact, "oriented": oriented, "note": note,
                       "keep_decoded": keep_decoded})

    rgb = lambda w, h, s, **kw: Image.fromarray(synth(w, h, s, **kw), "RGB")
    add("landscape.png", encode(rgb(61, 37, 1), "PNG"), True)
    add("portrait.png", encode(rgb(29, 45, 2), "PNG"), True)
    add("square.png", encode(rgb(40, 40, 3), "PNG"), True)
    add("tiny.png", encode(rgb(7, 5, 4), "PNG"), True, note="upscaling path")
    add("exact32.png", encode(rgb(32, 32, 5), "PNG"), True, note="already at the s32 target size")
    add("photo.png", encode(rgb(640, 480, 6, noise=6, smooth=True), "PNG"), True, note="full 336 case",
        keep_decoded=False)
    add("exact336.png", encode(rgb(336, 336, 7, noise=6, smooth=True), "PNG"), True, note="already 336x336",
        keep_decoded=False)
    add("orient6.png", encode(rgb(40, 24, 8), "PNG", exif=exif_bytes(6)), True, oriented=True)
    for o in (1, 2, 3, 4, 5, 7, 8):
        add(f"orient{o}.png", encode(rgb(12, 7, 50 + o), "PNG", exif=exif_bytes(o)), True, oriented=True)
    add("orient6.jpg", encode(rgb(40, 24, 8), "JPEG", quality=92, exif=exif_bytes(6)), True, oriented=True)
    add("orient3.jpg", encode(rgb(26, 18, 9), "JPEG", quality=92, exif=exif_bytes(3)), True, oriented=True)

    rgba = synth(33, 21, 10)
    alpha = np.tile(np.linspace(0, 255, 33).astype(np.uint8), (21, 1))
    alpha[:, :4] = 0  # fully transparent pixels with colour: PIL keeps the colour
    add("rgba.png", encode(Image.fromarray(np.dstack([rgba, alpha]), "RGBA"), "PNG"), True)
    add("gray_alpha.png", encode(Image.fromarray(np.dstack([rgba[..., 0], alpha]), "LA"), "PNG"), True)
    add("gray.png", encode(Image.fromarray(synth(23, 31, 11)[..., 1], "L"), "PNG"), True)
    pal = rgb(30, 20, 12).quantize(colors=40)
    add("palette.png", encode(pal, "PNG", transparency=3), True, note="palette with tRNS")
    add("palette.gif", encode(rgb(30, 20, 13).quantize(colors=64), "GIF"), True)
    gif_t = rgb(30, 20, 14).quantize(colors=32)
    add("transparent.gif", encode(gif_t, "GIF", transparency=5), True, note="transparent index: PIL keeps the palette colour")
    # First frame smaller than the logical screen, at an offset: PIL fills the rest with palette entry 0, or
    # with the transparent index when there is one.
    for name, extra in (("offset.gif", {}), ("offset_transparent.gif", {"transparency": 7})):
        data = bytearray(encode(rgb(30, 20, 40 + len(extra)).quantize(colors=32), "GIF", **extra))
        data[6:10] = (36).to_bytes(2, "little") + (26).to_bytes(2, "little")
        d = data.index(0x2C, 13 + 3 * 32)
        data[d + 1:d + 5] = (3).to_bytes(2, "little") + (2).to_bytes(2, "little")
        add(name, bytes(data), True, note="frame 30x20 at (3, 2) on a 36x26 screen")
    frames = [rgb(24, 16, 15).quantize(colors=32), rgb(24, 16, 16).quantize(colors=32)]
    add("animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0), True)
    add("gray.jpg", encode(Image.fromarray(synth(35, 26, 17)[..., 0], "L"), "JPEG", quality=90), True)
    add("color.jpg", encode(rgb(44, 30, 18), "JPEG", quality=90), True, note="4:2:0 chroma")
    add("color444.jpg", encode(rgb(44, 30, 19), "JPEG", quality=90, subsampling=0), True)
    add("progressive.jpg", encode(rgb(41, 27, 20), "JPEG", quality=85, progressive=True), True)
    # More JPEG structure for the exact decoder: 4:2:2, chroma two samples wide (libjpeg then replicates
    # instead of interpolating), 1x1, optimised Huffman tables at quality 100, progressive grey.
    add("q50_422.jpg", encode(rgb(37, 23, 30), "JPEG", quality=50, subsampling=1), True)
    add("narrow420.jpg", encode(rgb(3, 7, 31), "JPEG", quality=90), True, note="chroma 2 samples wide")
    add("one.jpg", encode(rgb(1, 1, 32), "JPEG", quality=90), True)
    add("q100_optimized.jpg", encode(rgb(45, 33, 33), "JPEG", quality=100, optimize=True), True)
    add("gray_progressive.jpg", encode(Image.fromarray(synth(29, 19, 34)[..., 2], "L"), "JPEG", quality=80, progressive=True), True)
    cmyk = Image.fromarray(synth(22, 14, 35), "RGB").convert("CMYK")
    add("cmyk.jpg", encode(cmyk, "JPEG", quality=90), False, note="Adobe CMYK: decoded by ImageSharp, not exact")
    # Restart markers, 4:4:0 and arithmetic coding need jpegtran (Debian's libjpeg-turbo-progs, the same
    # libjpeg-turbo 2.1.5 as PIL's): Pillow 9.4 writes none of them.
    jpegtran = shutil.which("jpegtran")
    if jpegtran is None:
        raise SystemExit("jpegtran not found: apt-get install libjpeg-turbo-progs")

    def transcode(name, source, *args, exact=True, note=""):
        out = subprocess.run([jpegtran, *args], input=source, capture_output=True, check=True).stdout
        add(name, out, exact, note=note)

    base420 = encode(rgb(50, 35, 36), "JPEG", quality=85)
    transcode("restart.jpg", base420, "-restart", "3B", note="restart interval of 3 MCUs")
    transcode("restart_progressive.jpg", base420, "-progressive", "-restart", "2B")
    transcode("transposed440.jpg", encode(rgb(35, 50, 37), "JPEG", quality=85, subsampling=1), "-transpose",
              note="4:4:0 chroma from transposing 4:2:2")
    transcode("arithmetic.jpg", base420, "-arithmetic", exact=False, note="arithmetic coding: ImageSharp's decoder")
    add("lossless.webp", encode(rgb(31, 23, 21), "WEBP", lossless=True), True)
    add("lossy.webp", encode(rgb(31, 23, 22), "WEBP", quality=80), True)
    add("alpha.webp", encode(Image.fromarray(np.dstack([rgba, alpha]), "RGBA"), "WEBP", lossless=True, exact=True), True)
    wframes = [rgb(24, 16, 23), rgb(24, 16, 24)]
    add("animated.webp", encode(wframes[0], "WEBP", save_all=True, append_images=wframes[1:], lossless=True, duration=100), True)
    aframes = [Image.fromarray(np.dstack([synth(33, 21, 60), alpha]), "RGBA"), Image.fromarray(np.dstack([synth(33, 21, 61), alpha]), "RGBA")]
    add("animated_lossy_alpha.webp", encode(aframes[0], "WEBP", save_all=True, append_images=aframes[1:], quality=80, duration=100), True,
        note="first frame VP8 + ALPH")
    add("image.bmp", encode(rgb(27, 19, 25), "BMP"), True, note="rows padded to 4 bytes")
    add("palette.bmp", encode(rgb(27, 19, 26).quantize(colors=16), "BMP"), True)

    # What PIL decodes each file to (and, for EXIF-tagged ones, the transposed image). The two large PNGs
    # keep no copy: lossless decoding is checked on the small ones, and their cases go through the file.
    pixels = {}
    for entry in images:
        path = os.path.join(OUT, entry["file"])
        stem = entry["file"].replace(".", "_")
        keep = entry.pop("keep_decoded")
        with Image.open(path) as im:
            raw = np.array(im.convert("RGB"))
        pixels[(entry["file"], False)] = raw
        entry["size"] = [raw.shape[1], raw.shape[0]]
        entry["decoded"] = f"{stem}.rgb.npy" if keep else None
        if keep:
            np.save(os.path.join(OUT, entry["decoded"]), raw)
        if entry["oriented"]:
            with Image.open(path) as im:
                turned = np.array(ImageOps.exif_transpose(im).convert("RGB"))
            pixels[(entry["file"], True)] = turned
            entry["decoded_oriented"] = f"{stem}.oriented.rgb.npy"
            np.save(os.path.join(OUT, entry["decoded_oriented"]), turned)

    def decoded(file, oriented):
        return Image.fromarray(pixels[(file, oriented)], "RGB")

    # Preprocessing cases: (image, config, pad, apply orientation)
    cases = []
    small = ["landscape.png", "portrait.png", "square.png", "tiny.png", "exact32.png", "rgba.png", "gray_alpha.png",
             "gray.png", "palette.png", "palette.gif", "transparent.gif", "animated.gif", "gray.jpg", "color.jpg",
             "color444.jpg", "progressive.jpg", "q50_422.jpg", "narrow420.jpg", "restart_progressive.jpg",
             "transposed440.jpg", "lossless.webp", "lossy.webp", "alpha.webp", "animated.webp", "animated_lossy_alpha.webp",
             "image.bmp", "palette.bmp"]
    for f in small:
        for pad in (False, True):
            cases.append((f, "s32", pad, False))
    for f in ("orient6.png", "orient6.jpg", "orient3.jpg"):
        for oriented in (False, True):
            cases.append((f, "s32", True, oriented))
    for f in ("landscape.png", "portrait.png", "tiny.png"):
        for pad in (False, True):
            cases.append((f, "s20crop32", pad, False))
            cases.append((f, "hw30x40", pad, False))
    cases.append(("photo.png", "clip336", True, False))
    cases.append(("exact336.png", "clip336", False, False))

    manifest_cases = []
    for f, cfg_name, pad, oriented in cases:
        out = reference(decoded(f, oriented), CONFIGS[cfg_name], pad)
        name = f"{f.replace('.', '_')}.{cfg_name}.{'pad' if pad else 'nopad'}{'.oriented' if oriented else ''}.npy"
        np.save(os.path.join(OUT, name), out)
        manifest_cases.append({"image": f, "config": f"{cfg_name}.json", "pad": pad, "oriented": oriented,
                               "expected": name, "shape": list(out.shape)})

    # The resampler alone, every PIL filter, shrinking and enlarging on each axis independently.
    resizes = []
    src = decoded("landscape.png", False)  # 61 x 37
    for filt_name, filt in (("bicubic", 3), ("bilinear", 2), ("box", 4), ("hamming", 5), ("lanczos", 1), ("nearest", 0)):
        for (w, h) in ((23, 50), (122, 11), (61, 20), (17, 37), (7, 5), (130, 90)):
            name = f"resize_{filt_name}_{w}x{h}.npy"
            np.save(os.path.join(OUT, name), np.array(src.resize((w, h), resample=filt, reducing_gap=None)))
            resizes.append({"source": "landscape_png.rgb.npy", "filter": filt, "width": w, "height": h, "expected": name})

    # Parrot's expand2square alone, on PIL's own image type.
    squares = []
    for f in ("landscape.png", "portrait.png", "tiny.png", "square.png"):
        out = expand2square(decoded(f, False), tuple(int(m * 255) for m in CLIP_MEAN))
        name = f"{f.replace('.', '_')}.square.npy"
        np.save(os.path.join(OUT, name), np.array(out))
        squares.append({"image": f, "expected": name})

    # The resize size rule, on sizes that stress the truncation of int(s * long / short).
    rng = np.random.default_rng(99)
    rule = []
    sizes = [(500, 333), (333, 500), (336, 336), (1, 1000), (1000, 1), (7, 5), (640, 480), (4032, 3024), (3, 10007)]
    sizes += [(int(a), int(b)) for a, b in rng.integers(1, 5000, size=(40, 2))]
    for s_edge in (336, 224, 32, 20):
        for w, h in sizes:
            ow, oh = hf_output_size(w, h, {"shortest_edge": s_edge})
            rule.append([w, h, s_edge, ow, oh])

    manifest = {"pillow": Image.__version__, "numpy": np.__version__, "images": images, "preprocess": manifest_cases,
                "resize": resizes, "expand2square": squares, "size_rule": rule}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total / 1e6:.2f} MB in {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
