using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>What the decode-session tests share (StaticSessionTests, GreedyOnDeviceTests): a tiny Qwen2, two prompts of different lengths.</summary>
internal static class DecodeSessionFixtures
{
    internal static readonly Qwen2Config Lm = new()
    {
        VocabSize = 61, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000,
    };

    internal static readonly int[][] Prompts = [[5, 9, 2, 44, 17], [3, 30]];

    /// <summary>Whether a session is KvCacheModel's static-step session.</summary>
    internal static bool IsStatic(IDecodingSession s) => s.GetType().Name == "StaticSession";
}
