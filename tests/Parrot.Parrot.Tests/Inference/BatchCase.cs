using Parrot.Parrot.Inference;
using Parrot.Parrot.Text;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// One sequence of a continuous-batch test: its conversation, whether it carries the image, its options, its max new
/// tokens (null: as many as the context leaves), the step it joins at and (≥ 0) the step it is removed at.
/// </summary>
internal sealed record BatchCase(ChatTurn[] Conversation, bool Image, GenerationOptions Options, int? Max, int JoinAt, int RemoveAt = -1)
{
    /// <summary>A one-turn conversation asking <paramref name="q"/>.</summary>
    public static ChatTurn[] Ask(string q, bool image = false) => [new ChatTurn(ChatRole.User, q, image)];
}
