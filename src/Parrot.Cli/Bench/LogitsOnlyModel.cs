namespace Parrot.Cli;

/// <summary>
/// A model whose sessions give logits only (their greedy path, <see cref="global::Parrot.Parrot.Inference.IGreedyDecodingSession"/>,
/// hidden), so the generator reads each step's logits back and picks on the host: the path greedy generation took before
/// the pick moved to the device (and sampling's). For `bench decoder --generator --host-pick` and the selftest rows that
/// compare the two paths.
/// </summary>
internal sealed class LogitsOnlyModel(global::Parrot.Parrot.Inference.IAutoregressiveModel inner) : global::Parrot.Parrot.Inference.IAutoregressiveModel
{
    public int VocabSize => inner.VocabSize;

    public global::Parrot.Parrot.Inference.IDecodingSession Start(IReadOnlyList<global::Parrot.Parrot.Inference.GenerationPrompt> prompts, int maxNewTokens) =>
        new Plain(inner.Start(prompts, maxNewTokens));

    private sealed class Plain(global::Parrot.Parrot.Inference.IDecodingSession s) : global::Parrot.Parrot.Inference.IDecodingSession
    {
        public float[][] Prefill() => s.Prefill();
        public float[][] Step(int[] tokens) => s.Step(tokens);
        public void Dispose() => s.Dispose();
    }
}
