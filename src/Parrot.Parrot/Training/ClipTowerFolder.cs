using System.Text.Json;
using System.Text.Json.Nodes;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Training;

/// <summary>
/// Writes a CLIP vision tower as a Hugging Face CLIPVisionModel folder: <c>config.json</c> (model_type
/// clip_vision_model), <c>preprocessor_config.json</c> (a CLIPImageProcessor sized to the tower) and
/// <c>model.safetensors</c> (names <c>vision_model.…</c>), each file written atomically, config.json last.
/// <see cref="ClipVisionLoader.Load"/> and <see cref="ImagePreprocessor.FromDirectory"/> read it back, and so
/// does a Parrot <c>mm_vision_tower</c> pointing at it.
/// </summary>
public static class ClipTowerFolder
{
    /// <summary>The CLIPVisionConfig JSON of <paramref name="c"/>.</summary>
    public static string ConfigJson(ClipVisionConfig c, DType dtype = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(c);
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("CLIPVisionModel"),
            ["model_type"] = "clip_vision_model",
            ["hidden_size"] = c.HiddenSize,
            ["intermediate_size"] = c.IntermediateSize,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_channels"] = c.NumChannels,
            ["image_size"] = c.ImageSize,
            ["patch_size"] = c.PatchSize,
            ["hidden_act"] = c.HiddenAct,
            ["layer_norm_eps"] = c.LayerNormEps,
            ["attention_dropout"] = 0.0,
            ["initializer_range"] = 0.02,
            ["initializer_factor"] = 1.0,
            ["torch_dtype"] = dtype == DType.BF16 ? "bfloat16" : "float32",
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>A CLIPImageProcessor config for a tower of <paramref name="imageSize"/> pixels (shortest edge and centre crop = the tower's size, CLIP's mean and std, bicubic).</summary>
    public static string PreprocessorJson(int imageSize)
    {
        var o = new JsonObject
        {
            ["crop_size"] = new JsonObject { ["height"] = imageSize, ["width"] = imageSize },
            ["do_center_crop"] = true,
            ["do_convert_rgb"] = true,
            ["do_normalize"] = true,
            ["do_rescale"] = true,
            ["do_resize"] = true,
            ["image_mean"] = new JsonArray(PreprocessorConfig.ClipMean.Select(v => (JsonNode?)v).ToArray()),
            ["image_processor_type"] = "CLIPImageProcessor",
            ["image_std"] = new JsonArray(PreprocessorConfig.ClipStd.Select(v => (JsonNode?)v).ToArray()),
            ["resample"] = 3,
            ["rescale_factor"] = 1.0 / 255,
            ["size"] = new JsonObject { ["shortest_edge"] = imageSize },
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Writes <paramref name="tower"/> to <paramref name="directory"/> (created if needed) with its weights in <paramref name="dtype"/>.</summary>
    public static void Save(ClipVisionModel tower, string directory, DType dtype = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(tower);
        ArgumentNullException.ThrowIfNull(directory);
        if (dtype is not (DType.F32 or DType.BF16)) throw new ArgumentException($"ClipTowerFolder: weights are written as float32 or bf16, not {dtype.Name()}");
        Directory.CreateDirectory(directory);
        ModelLoading.Save(tower, directory, dtype: dtype);
        AtomicFile.WriteAllText(Path.Combine(directory, "preprocessor_config.json"), PreprocessorJson(tower.Config.ImageSize));
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), ConfigJson(tower.Config, dtype));
    }
}
