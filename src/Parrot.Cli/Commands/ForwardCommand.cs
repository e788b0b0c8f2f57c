using System.CommandLine;
using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli;

/// <summary>`parrot forward --model DIR --tokens 1,2,3 --out logits.npy`: float32 logits [T, vocab] of a Qwen2/Qwen1.5 checkpoint.</summary>
internal static class ForwardCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Qwen2/Qwen1.5 model directory", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "Comma-separated token ids", Required = true };
        var output = new Option<string>("--out") { Description = "Where to write the float32 logits [T, vocab] as .npy", Required = true };
        var cmd = new Command("forward", "Run a Qwen2 checkpoint over token ids and write the logits (.npy, float32 [T, vocab])");
        cmd.Options.Add(model); cmd.Options.Add(tokens); cmd.Options.Add(output);
        cmd.SetAction(p => CliErrors.Run("forward", () =>
        {
            var ids = TokenIds.Parse(p.GetValue(tokens)!);
            using var m = Qwen2Loader.Load(p.GetValue(model)!, DType.F32);
            foreach (var id in ids)
                if (id < 0 || id >= m.Config.VocabSize) throw new CliException($"--tokens: id {id} is outside the vocabulary [0, {m.Config.VocabSize})");
            using var scope = TensorScope.Begin();
            using var ng = Graph.NoGrad();
            var x = Tensor.FromArray(ids.Select(i => (long)i).ToArray(), 1, ids.Length);
            var logits = m.Forward(x).Value.Reshape(ids.Length, m.Config.VocabSize);
            Npy.Write(p.GetValue(output)!, logits);
            return 0;
        }));
        return cmd;
    }
}
