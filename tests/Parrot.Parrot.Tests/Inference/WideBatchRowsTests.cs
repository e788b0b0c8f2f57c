using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tensors.Cpu.Gemm;
using static Parrot.Parrot.Tests.Inference.DecodeSessionFixtures;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// The CPU continuous batch's contract past 16 rows: a decode step of 24 rows (<c>KvCacheModel.StepRows</c>, each row its
/// own cache) gives every row the logits it gets alone, bit for bit, over several steps. A row's bits must not depend
/// on how many rows its products have; with the Vector256 kernels the linear layers' x · Wᵀ keeps one summation order
/// up to 64 rows (<c>SkinnySgemm256.MaxDotRows</c>; with the limit at 16, as before, this fails at the first step: a
/// product of more than 16 rows went through the packed GEMM, which sums in another order). Forced to the Vector256
/// kernels, so an AVX-512 machine checks the same (its own kernels keep the order up to 16 rows only).
/// </summary>
public class WideBatchRowsTests
{
    private static int[] Bits(float[] x) => x.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void TwentyFourRowsGiveEachRowItsLogitsAlone([Values(DType.F32, DType.BF16)] DType dtype)
    {
        bool saved = GemmOptions.ForceVector256;
        GemmOptions.ForceVector256 = true;
        var caches = new List<KvCache>();
        try
        {
            using var model = new Qwen2ForCausalLM(Lm, seed: 8, dtype);
            var lm = (KvCacheModel)Generator.Wrap(model, DecodeStepMode.Eager);
            const int rows = 24, steps = 4;
            var together = new KvCache[rows];
            var alone = new KvCache[rows];
            var tokens = new int[rows];
            for (int i = 0; i < rows; i++)
            {
                int[] prompt = Enumerable.Range(0, 2 + i % 5).Select(j => (7 * i + 3 * j + 1) % Lm.VocabSize).ToArray();
                lm.PrefillRow(new GenerationPrompt(prompt), _ => steps, out together[i], out _);
                lm.PrefillRow(new GenerationPrompt(prompt), _ => steps, out alone[i], out _);
                caches.Add(together[i]);
                caches.Add(alone[i]);
                tokens[i] = (11 * i + 5) % Lm.VocabSize;
            }
            for (int step = 0; step < steps; step++)
            {
                var batch = lm.StepRows(together, tokens);
                for (int i = 0; i < rows; i++)
                {
                    var one = lm.StepRows([alone[i]], [tokens[i]])[0];
                    Assert.That(Bits(batch[i]), Is.EqualTo(Bits(one)), $"step {step}, row {i}: in a batch of {rows} against alone");
                    tokens[i] = Array.IndexOf(one, one.Max());
                }
            }
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
            GemmOptions.ForceVector256 = saved;
        }
    }
}
