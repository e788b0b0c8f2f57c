using System.CommandLine;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `--dtype f32|bf16` of the commands that run a model for answers (forward, generate, chat, eval, serve, and vision for a tower alone): the dtype the
/// weights are kept in and the model computes with. float32 is the default, the precision the tests hold against the
/// reference implementations; a bf16 checkpoint (every released Qwen2 and Parrot model) is widened on load. bf16 keeps
/// such a checkpoint's weights as they are stored — half the memory, and decode streams half the bytes — with float32
/// accumulation in every product; its answers follow float32's to bf16 precision, not bit for bit.
/// </summary>
internal static class DTypeOption
{
    public static Option<string> Create()
    {
        var option = new Option<string>("--dtype")
        {
            Description = "f32 or bf16: the dtype of the weights and the computation (f32: a bf16 checkpoint is widened on load; bf16: half the memory and faster decoding, answers to bf16 precision)",
            DefaultValueFactory = _ => "f32",
        };
        option.AcceptOnlyFromAmong("f32", "bf16");
        return option;
    }

    /// <summary>The parsed value as a <see cref="DType"/> (the parser has already refused anything else).</summary>
    public static DType Resolve(string? text) => text == "bf16" ? DType.BF16 : DType.F32;

    /// <summary>The name the option takes for <paramref name="dtype"/>.</summary>
    public static string Name(DType dtype) => dtype == DType.BF16 ? "bf16" : "f32";
}
