using System.CommandLine;
using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>
/// `parrot vision --model DIR --image FILE [--layer -2] [--pad] [--dtype f32|bf16] --out feats.npy`: float32 hidden
/// states [1 + N, C] of one layer of a CLIP vision tower for one image, after CLIP preprocessing; with --dtype bf16
/// the tower keeps bf16 weights and computes as the models' bf16 path does (the file is float32 either way).
/// </summary>
internal static class VisionCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "CLIP model directory (CLIPVisionModel, CLIPModel or a Parrot checkpoint with --config)", Required = true };
        var image = new Option<string>("--image") { Description = "Image file (JPEG, PNG, WebP, GIF, BMP)", Required = true };
        var layer = new Option<int>("--layer") { Description = "Hidden state to write, Hugging Face indexing: 0 = embeddings after pre_layrnorm, i = output of layer i, negative counts from the end (-2 = Parrot's)", DefaultValueFactory = _ => -2 };
        var pad = new Option<bool>("--pad") { Description = "Pad the image to a square with the mean colour first (Parrot's image_aspect_ratio \"pad\")" };
        var output = new Option<string>("--out") { Description = "Where to write the float32 hidden states [1 + N, C] as .npy", Required = true };
        var config = new Option<string?>("--config") { Description = "The tower's CLIP config.json, when the model directory's own config is not one (a Parrot checkpoint)" };
        var cmd = new Command("vision", "Run a CLIP vision tower over one image and write one layer's hidden states (.npy, float32 [1 + N, C])");
        var device = DeviceOption.Create();
        var dtype = DTypeOption.Create();
        foreach (var o in new Option[] { device, model, image, layer, pad, output, config, dtype }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("vision", () =>
        {
            var dev = DeviceOption.Resolve(p.GetValue(device), "vision");
            string dir = p.GetValue(model)!;
            if (!Directory.Exists(dir)) throw new CliException($"--model: {dir} is not a directory");
            string outFolder = Path.GetDirectoryName(Path.GetFullPath(p.GetValue(output)!))!;
            if (!Directory.Exists(outFolder)) throw new CliException($"--out: the folder {outFolder} does not exist");
            // A bad --image is a usage error (exit 2), as in forward, generate and chat, and found before the tower is loaded.
            RgbImage rgb;
            try { rgb = ImageLoader.Load(p.GetValue(image)!); }
            catch (ImageLoadException e) { throw new CliException($"--image: {e.Message}"); }
            var towerConfig = p.GetValue(config) is { } path ? ClipVisionConfigJson.Load(path) : null;
            using var tower = ClipVisionLoader.Load(dir, DTypeOption.Resolve(p.GetValue(dtype)), config: towerConfig);
            tower.To(dev); // the pixels are made on the host and copied there by the embeddings
            int index = tower.HiddenStateIndex(LayerIn(tower, p.GetValue(layer)));
            if (tower.Config.NumChannels != 3) throw new CliException($"the tower takes {tower.Config.NumChannels}-channel images; images are RGB");
            var preprocessor = new ImagePreprocessor(PreprocessorFor(dir, tower.Config));
            using var scope = TensorScope.Begin();
            using var ng = Graph.NoGrad();
            var pixels = preprocessor.Process(rgb, p.GetValue(pad)).Unsqueeze(0);
            var states = tower.HiddenState(pixels, index).Value;
            if (states.DType != DType.F32) states = states.To(DType.F32);
            Npy.Write(p.GetValue(output)!, states.Reshape(states.Dim(1), states.Dim(2)));
            return 0;
        }));
        return cmd;
    }

    private static int LayerIn(ClipVisionModel tower, int layer)
    {
        int count = tower.Config.NumHiddenLayers + 1;
        if (layer < -count || layer >= count)
            throw new CliException($"--layer {layer}: the tower has {count} hidden states, so the layer must be in -{count}..{count - 1}");
        return layer;
    }

    /// <summary>
    /// The directory's preprocessor_config.json when it has one; otherwise CLIP's preprocessing (bicubic resize
    /// of the shortest edge, centre crop, CLIP mean/std) at the tower's own image_size, which is 336 for
    /// Parrot's tower and whatever a small test tower says. Either way the output must be the tower's input size.
    /// </summary>
    private static PreprocessorConfig PreprocessorFor(string dir, ClipVisionConfig tower)
    {
        int s = tower.ImageSize;
        string file = Path.Combine(dir, "preprocessor_config.json");
        if (!File.Exists(file)) return PreprocessorConfig.Clip336 with { ShortestEdge = s, CropHeight = s, CropWidth = s };
        var config = PreprocessorConfig.Load(file);
        var shape = new ImagePreprocessor(config).FixedOutputShape;
        if (shape is null || shape[1] != s || shape[2] != s)
            throw new CliException($"{file}: it makes {(shape is null ? "images of varying size" : $"{shape[1]}x{shape[2]} images")}, but the tower takes {s}x{s} (image_size)");
        return config;
    }
}
