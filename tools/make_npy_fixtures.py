#!/usr/bin/env python3
"""Writes the small .npy fixtures the NpyTests read, with numpy itself, plus manifest.json.

Run by hand with /usr/bin/python3 (numpy installed); CI never runs it, the committed files are what
the tests read. Every array is arange-based, so the test recomputes the expected values from the
manifest's formula instead of trusting numpy or our reader:

  value[i] = i * scale + offset          for "linear" (i = flat C-order index)
  value[i] = (i * scale + offset) % mod  for "modular"
  value[i] = (i % mod == 0)              for "bool"

Files the reader must refuse are listed under "invalid" with a word their error message must contain.
"""
import io
import json
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "Parrot.Tensors.Tests", "Fixtures", "npy")


def linear(shape, dtype, scale, offset, order="C"):
    n = int(np.prod(shape)) if len(shape) else 1
    values = np.arange(n, dtype=np.float64) * scale + offset
    a = values.astype(dtype).reshape(shape)
    return np.asfortranarray(a) if order == "F" else a


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"generator": "tools/make_npy_fixtures.py", "numpy": np.__version__, "valid": [], "invalid": []}

    def save(name, array, formula, version=None, **params):
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            if version is None:
                np.save(f, array, allow_pickle=False)
            else:
                np.lib.format.write_array(f, array, version=version, allow_pickle=False)
        manifest["valid"].append({
            "file": name,
            "descr": array.dtype.str,
            "shape": list(array.shape),
            "fortran_order": bool(array.flags.f_contiguous and not array.flags.c_contiguous),
            "version": list(version) if version else [1, 0],
            "formula": formula,
            **params,
        })

    save("f4_2x3.npy", linear((2, 3), "<f4", 0.5, -1.0), "linear", scale=0.5, offset=-1.0)
    save("f8_2x3x4.npy", linear((2, 3, 4), "<f8", 0.25, -2.0), "linear", scale=0.25, offset=-2.0)
    save("f2_8.npy", linear((8,), "<f2", 0.5, -1.5), "linear", scale=0.5, offset=-1.5)
    save("i4_10.npy", linear((10,), "<i4", -3, 7), "linear", scale=-3, offset=7)
    save("i8_3x4.npy", linear((3, 4), "<i8", 3000000000, -15000000000), "linear", scale=3000000000, offset=-15000000000)
    save("u1_300.npy", (np.arange(300) % 256).astype("|u1"), "modular", scale=1, offset=0, mod=256)
    save("b1_7.npy", np.arange(7) % 3 == 0, "bool", mod=3)
    save("i4_2x3x4.npy", linear((2, 3, 4), "<i4", 1, -5), "linear", scale=1, offset=-5)
    save("f8_scalar.npy", np.array(3.5, dtype="<f8"), "linear", scale=0, offset=3.5)
    save("i8_scalar.npy", np.array(-42, dtype="<i8"), "linear", scale=0, offset=-42)
    save("f4_empty_0.npy", np.zeros((0,), dtype="<f4"), "linear", scale=0, offset=0)
    save("i8_empty_2x0x3.npy", np.zeros((2, 0, 3), dtype="<i8"), "linear", scale=0, offset=0)
    save("f4_fortran_3x4.npy", linear((3, 4), "<f4", 1.5, 0.25, order="F"), "linear", scale=1.5, offset=0.25)
    save("i4_fortran_2x3x4.npy", linear((2, 3, 4), "<i4", 2, -9, order="F"), "linear", scale=2, offset=-9)
    save("f4_bigendian_2x3.npy", linear((2, 3), ">f4", 0.75, -1.0), "linear", scale=0.75, offset=-1.0)
    save("i8_bigendian_5.npy", linear((5,), ">i8", -1000000007, 3), "linear", scale=-1000000007, offset=3)
    save("f4_v2_3x2.npy", linear((3, 2), "<f4", 2.0, 1.0), "linear", version=(2, 0), scale=2.0, offset=1.0)
    save("i4_v3_4.npy", linear((4,), "<i4", 5, 1), "linear", version=(3, 0), scale=5, offset=1)

    def invalid(name, array, expect):
        with open(os.path.join(OUT, name), "wb") as f:
            np.save(f, array, allow_pickle=False)
        manifest["invalid"].append({"file": name, "message_contains": expect})

    invalid("c8_unsupported.npy", np.arange(3, dtype=np.complex64), "not supported")
    invalid("i2_unsupported.npy", np.arange(3, dtype=np.int16), "not supported")
    invalid("record_unsupported.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "structured")

    # One entry per line: easy to read and to diff.
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        f.write("{\n")
        f.write(f' "generator": {json.dumps(manifest["generator"])},\n "numpy": {json.dumps(manifest["numpy"])},\n')
        for key in ("valid", "invalid"):
            entries = ",\n".join("  " + json.dumps(e) for e in manifest[key])
            f.write(f' "{key}": [\n{entries}\n ]' + (",\n" if key == "valid" else "\n"))
        f.write("}\n")
    print(f"wrote {len(manifest['valid'])} valid and {len(manifest['invalid'])} invalid fixtures to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    sys.exit(main())
