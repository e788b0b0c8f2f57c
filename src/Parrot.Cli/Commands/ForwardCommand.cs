using System.CommandLine;
using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>
/// `parrot forward --model DIR --tokens 1,2,3 --out logits.npy [--image FILE] [--vision DIR]`: float32 logits
/// [T, vocab] of a Qwen2/Qwen1.5 checkpoint, or [T', vocab] of a Parrot model directory, where the image
/// placeholder -200 became the image's visual tokens.
/// </summary>
internal static class ForwardCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Qwen2/Qwen1.5 model directory, or a Parrot model directory (model_type parrot_qwen2)", Required = true };
        var tokens = new Option<string>("--tokens") { Description = $"Comma-separated token ids; {ParrotSample.ImageToken} marks where the --image goes (write --tokens=... when the list starts with '-')", Required = true };
        var output = new Option<string>("--out") { Description = "Where to write the float32 logits [T', vocab] as .npy", Required = true };
        var image = ParrotInputs.ImageOption();
        var vision = ParrotInputs.VisionOption();
        var cmd = new Command("forward",
            "Run a checkpoint over token ids and write the logits (.npy, float32 [T', vocab]). For a Qwen2 model T' = T, the number of ids. " +
            $"For a Parrot model with --image, the placeholder {ParrotSample.ImageToken} is replaced by the image's visual tokens (1 + N with the CLS token for " +
            "mm_vision_select_feature cls_patch, N = (image_size / patch_size)^2 patches: 577 for CLIP ViT-L/14-336), so T' = T - 1 + 1 + N " +
            "(T - 1 + N for mm_vision_select_feature patch), one row per position of the spliced sequence. T' must not exceed the model's context (max_position_embeddings).");
        var device = DeviceOption.Create();
        var dtype = DTypeOption.Create();
        foreach (var o in new Option[] { device, dtype, model, tokens, output, image, vision }) cmd.Options.Add(o);
        cmd.SetAction(p => CliErrors.Run("forward", () =>
        {
            var dev = DeviceOption.Resolve(p.GetValue(device), "forward");
            var ids = TokenIds.Parse(p.GetValue(tokens)!);
            string dir = p.GetValue(model)!;
            var type = DTypeOption.Resolve(p.GetValue(dtype));
            if (ParrotInputs.Open(dir, ids, p.GetValue(image), p.GetValue(vision), type) is { } opened)
            {
                using var parrot = opened.Model.To(dev);
                using var parrotLogits = parrot.Logits(ids, opened.Image);
                Npy.Write(p.GetValue(output)!, parrotLogits); // bf16 logits are written as float32 (exact)
                return 0;
            }
            using var m = Qwen2Loader.Load(dir, type);
            m.To(dev);
            foreach (var id in ids)
                if (id < 0 || id >= m.Config.VocabSize) throw new CliException($"--tokens: id {id} is outside the vocabulary [0, {m.Config.VocabSize})");
            // The rule generate and serve apply (a forward generates nothing, so the prompt alone must fit).
            global::Parrot.Parrot.Inference.ContextWindow.CheckPrompt(m.Config.MaxPositionEmbeddings, ids.Length);
            using var scope = TensorScope.Begin();
            using var ng = Graph.NoGrad();
            var x = Tensor.FromArray(ids.Select(i => (long)i).ToArray(), dev, 1, ids.Length);
            var logits = m.Forward(x).Value.Reshape(ids.Length, m.Config.VocabSize);
            Npy.Write(p.GetValue(output)!, logits);
            return 0;
        }));
        return cmd;
    }
}
