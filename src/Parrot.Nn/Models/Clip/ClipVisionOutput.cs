using Parrot.Autograd;

namespace Parrot.Nn.Models.Clip;

/// <summary>
/// What the CLIP vision tower returns, Hugging Face's way: <paramref name="HiddenStates"/>[0] is the embedding
/// after pre_layrnorm and [i] the output of layer i (each [B, 1 + N, C]); <paramref name="LastHiddenState"/> is
/// the last of them; <paramref name="PoolerOutput"/> [B, C] is post_layernorm applied to its class token.
/// </summary>
public sealed record ClipVisionOutput(IReadOnlyList<Variable> HiddenStates, Variable LastHiddenState, Variable PoolerOutput);
