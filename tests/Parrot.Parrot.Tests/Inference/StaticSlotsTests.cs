using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;
using static Parrot.Parrot.Tests.Inference.DecodeSessionFixtures;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// <c>KvCacheModel.StaticSlots</c> (the continuous batch's static step with slots) against the eager rows it replaces
/// (<c>KvCacheModel.StepRows</c>, each row its own cache) on the same feeds: rows joining (S growing 1 → 2 → 4, C
/// growing), leaving (an idle slot that writes nothing) and a new row taking a freed slot; logits bit for bit and
/// greedy ids equal, on the CPU and the test device, f32 and bf16. So a row's result does not depend on the product's
/// M (S rows, idle ones included, against the live count) on these kernels.
/// </summary>
public class StaticSlotsTests
{
    private static readonly int[][] Joiners = [[5, 9, 2, 44, 17], [3, 30], [8, 1, 1, 60], [12], [40, 41, 42, 43, 44, 45, 46]];

    private static int[] Bits(float[] x) => x.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void SlotsGiveTheEagerRowsBitForBit([Values(DType.F32, DType.BF16)] DType dtype, [Values(false, true)] bool onTestDevice)
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 8, dtype);
        if (onTestDevice) model.To(TestDevice.Get());
        var lm = (KvCacheModel)Generator.Wrap(model, DecodeStepMode.Static);
        const int context = 300;
        using var slots = new KvCacheModel.StaticSlots(lm, context, DecodeStepMode.Static);
        // Live rows: (joiner index, its eager cache, its slot).
        var live = new List<(int Who, KvCache Cache, int Slot)>();
        var builds = new List<(int S, int C)>();
        try
        {
            void Join(int who, int maxNew)
            {
                lm.PrefillRow(new GenerationPrompt(Joiners[who]), _ => maxNew, out var eager, out int length);
                lm.PrefillRow(new GenerationPrompt(Joiners[who]), _ => 0, out var forSlot, out _);
                using (forSlot)
                {
                    int slot = slots.Reserve(length + maxNew);
                    slots.Load(slot, forSlot);
                    live.Add((who, eager, slot));
                }
                if (builds.Count == 0 || builds[^1] != (slots.Slots, slots.Capacity)) builds.Add((slots.Slots, slots.Capacity));
            }
            void Leave(int who)
            {
                var row = live.Single(l => l.Who == who);
                live.Remove(row);
                row.Cache.Dispose();
                slots.Free(row.Slot);
            }
            Join(0, 30);
            for (int step = 0; step < 40; step++)
            {
                if (step == 2) Join(1, 30);                       // S 1 → 2
                if (step == 4) Join(2, 40);                       // S 2 → 4 (one slot idle)
                if (step == 7) Leave(1);                          // two idle slots
                if (step == 9) Join(3, 270);                      // a freed slot; C 256 → 300 (the context)
                if (step == 12) Join(4, 30);                      // the last idle slot
                if (step == 15) Leave(0);
                var tokens = live.Select(l => (7 * step + 3 * l.Who + 1) % Lm.VocabSize).ToArray();
                var caches = live.Select(l => l.Cache).ToList();
                var feed = live.Select(l => l.Slot).ToArray();
                if (step % 3 == 2)
                {
                    // Mixed picks: even joiners greedy on the device, the others' logits.
                    var greedy = live.Select(l => l.Who % 2 == 0).ToArray();
                    var (wantIds, wantLogits) = lm.StepRows(caches, tokens, greedy);
                    var (ids, logits) = slots.Step(feed, tokens, greedy);
                    Assert.That(ids, Is.EqualTo(wantIds), $"step {step}: greedy ids");
                    for (int i = 0; i < live.Count; i++)
                        Assert.That(logits[i] is null ? null : Bits(logits[i]!), Is.EqualTo(wantLogits[i] is null ? null : Bits(wantLogits[i]!)), $"step {step}: joiner {live[i].Who}'s logits");
                }
                else
                {
                    // An idle slot writes nothing: its keys are the same bits after the step.
                    var dec = slots.Decoder!;
                    int idle = Enumerable.Range(0, dec.Batch).FirstOrDefault(r => dec.Cache.IsIdle(r), -1);
                    float[]? idleKeys = idle < 0 ? null : dec.Cache.Keys(1).Narrow(0, idle, 1).To(DType.F32).ToFloatArray();
                    var want = lm.StepRows(caches, tokens);
                    var (ids, logits) = slots.Step(feed, tokens, new bool[live.Count]);
                    Assert.That(ids, Is.All.EqualTo(-1));
                    for (int i = 0; i < live.Count; i++)
                        Assert.That(Bits(logits[i]!), Is.EqualTo(Bits(want[i])), $"step {step}: joiner {live[i].Who}'s logits (S {dec.Batch}, {live.Count} live)");
                    if (idleKeys is not null)
                        Assert.That(Bits(dec.Cache.Keys(1).Narrow(0, idle, 1).To(DType.F32).ToFloatArray()), Is.EqualTo(Bits(idleKeys)), $"step {step}: idle slot {idle} wrote nothing");
                }
            }
            Assert.That(builds, Is.EqualTo(new[] { (1, 256), (2, 256), (4, 256), (4, context) }), "S doubled when full, C grown to the context at most");
            Assert.That(slots.Builds, Is.EqualTo(4));
            var positions = slots.Decoder!.Cache.Positions.ToLongArray();
            for (int r = 0; r < positions.Length; r++)
                if (slots.Decoder.Cache.IsIdle(r)) Assert.That(positions[r], Is.GreaterThanOrEqualTo(context), $"idle slot {r}'s device position is outside the cache");
                else Assert.That(positions[r], Is.EqualTo(live.Single(l => l.Slot == r).Cache.Length(0)), $"slot {r}'s device position is its length");
            // Emptied, the 4 × 300 decoder is kept for a join that needs more than a quarter of it, and starts small again for one that does not.
            foreach (var who in live.Select(l => l.Who).ToList()) Leave(who);
            Join(0, 300 - Joiners[0].Length);
            Assert.That((slots.Slots, slots.Capacity, slots.Builds), Is.EqualTo((4, context, 4)), "kept");
            Leave(0);
            Join(1, 30);
            Assert.That((slots.Slots, slots.Capacity, slots.Builds), Is.EqualTo((1, 256, 5)), "started again from one slot");
            var (_, again) = slots.Step([live[0].Slot], [3], [false]);
            Assert.That(Bits(again[0]!), Is.EqualTo(Bits(lm.StepRows([live[0].Cache], [3])[0])), "and decodes as before");
        }
        finally
        {
            foreach (var l in live) l.Cache.Dispose();
        }
    }

    [Test]
    public void FeedsThatDoNotMatchTheSlotsAreRefused()
    {
        using var model = new Qwen2ForCausalLM(Lm, seed: 8);
        var lm = (KvCacheModel)Generator.Wrap(model, DecodeStepMode.Static);
        using var slots = new KvCacheModel.StaticSlots(lm, 64, DecodeStepMode.Static);
        Assert.That(() => slots.Step([0], [1], [false]), Throws.InvalidOperationException.With.Message.Contains("no sequence joined"));
        Assert.That(() => slots.Reserve(65), Throws.ArgumentException.With.Message.Contains("does not fit the context of 64"));
        lm.PrefillRow(new GenerationPrompt([1, 2]), _ => 0, out var c, out _);
        using (c)
        {
            int a = slots.Reserve(10), b = slots.Reserve(10);
            slots.Load(a, c);
            Assert.That(() => slots.Load(a, c), Throws.ArgumentException.With.Message.Contains("already loaded"));
            Assert.That(() => slots.Step([b], [1], [false]), Throws.ArgumentException.With.Message.Contains("1 slots fed (" + b + "), 1 loaded").Or.Message.Contains("not loaded"));
            Assert.That(() => slots.Step([a, a], [1, 1], [false, false]), Throws.ArgumentException);
            Assert.That(() => slots.Step([a], [61], [false]), Throws.ArgumentException.With.Message.Contains("outside the vocabulary"));
            Assert.That(slots.Step([a], [1], [true]).Ids[0], Is.InRange(0, 60), "an unloaded reserved slot is idle: the step runs");
        }
    }
}
