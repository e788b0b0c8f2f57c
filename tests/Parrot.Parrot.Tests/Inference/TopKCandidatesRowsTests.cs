using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// <see cref="TopKCandidates.ReadRows"/>, the continuous batch's read of chosen rows of [S, vocab] logits: candidate rows
/// get the top values and ids at the largest count asked (ties by lower id), refused and unasked rows their whole row, in
/// the entries' order, on the CPU and the test device (two reads for the candidates, one for the whole rows); under a
/// repetition penalty each row's seen ids' logits follow its top ones, gathered on the device in the same read of values
/// (4 bytes a seen id), the ids uploaded once and then only the new ones (<see cref="DeviceSeenIds"/>); bad input named.
/// </summary>
public class TopKCandidatesRowsTests
{
    private static readonly CandidateCheck Yes = (_, _, _) => true, No = (_, _, _) => false;

    [Test]
    public void ChosenRowsAreReadAsCandidatesOrWhole([Values(false, true)] bool onTestDevice)
    {
        const int s = 5, vocab = 30;
        var rng = new Random(3);
        // Rounded to quarters: ties occur.
        var data = Enumerable.Range(0, s * vocab).Select(_ => (float)Math.Round(rng.NextDouble() * 8) / 4).ToArray();
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        using var logits = Tensor.FromArray(data, device, s, vocab);
        int[] at = [3, 1, 4, 0];
        var dev = TestDevice.Backend;
        long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes;
        var rows = TopKCandidates.ReadRows(logits, at, [new(2, Yes), null, new(6, Yes), new(3, No)]);
        if (onTestDevice)
        {
            Assert.That(dev.DeviceToHost - reads, Is.EqualTo(3), "values, ids, the whole rows");
            Assert.That(dev.DeviceToHostBytes - bytes, Is.EqualTo(12L * 6 * 3 + 4L * vocab * 2));
        }
        float[] Row(int r) => data.AsSpan(r * vocab, vocab).ToArray();
        for (int i = 0; i < at.Length; i++)
        {
            if (i is 1 or 3)
            {
                Assert.That(rows[i].Logits, Is.EqualTo(Row(at[i])), $"entry {i} whole");
                continue;
            }
            var top = Row(at[i]).Select((v, id) => (v, id)).OrderByDescending(x => x.v).ThenBy(x => x.id).Take(6).ToArray();
            Assert.That(rows[i].Logits, Is.Null, $"entry {i}");
            Assert.That(rows[i].Values, Is.EqualTo(top.Select(x => x.v)), $"entry {i} values (the largest count, 6)");
            Assert.That(rows[i].Ids, Is.EqualTo(top.Select(x => x.id)), $"entry {i} ids");
            Assert.That(rows[i].Top, Is.EqualTo(6), $"entry {i}: all top candidates");
        }
    }

    /// <summary>
    /// Two penalised rows and a plain one: each penalised row's candidates are the top count (the largest asked) and then
    /// its own seen ids outside them, in the order first seen, with their row's values; its check is given exactly those
    /// and the top count. One more read of values than none (the seen values ride with the top ones): 12 bytes a top
    /// candidate, 4 a seen one. The seen ids go up once, then by the new id a pick adds (nothing when it was seen).
    /// </summary>
    [Test]
    public void SeenIdsAreGatheredAfterTheTopOnes([Values(false, true)] bool onTestDevice)
    {
        const int s = 4, vocab = 40;
        var rng = new Random(7);
        var data = Enumerable.Range(0, s * vocab).Select(_ => (float)Math.Round(rng.NextDouble() * 16 - 8) / 4).ToArray();
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        using var logits = Tensor.FromArray(data, device, s, vocab);
        var options = new GenerationOptions { Temperature = 1, TopK = 2, RepetitionPenalty = 1.3, Seed = 1 };
        var a = new TokenSampler(options, vocab, [39, 0, 5, 39, 17]);
        var b = new TokenSampler(options, vocab, [21, 3]);
        using var seenA = new DeviceSeenIds(a);
        using var seenB = new DeviceSeenIds(b);
        Assert.That(a.SeenIds, Is.EqualTo(new[] { 39, 0, 5, 17 }), "each once, in the order first seen");
        var given = new List<(int[] Ids, float[] Values, int Top)>();
        CandidateCheck Record() => (ids, values, top) => { given.Add((ids.ToArray(), values.ToArray(), top)); return true; };
        int[] at = [2, 0, 3];
        float[] Row(int r) => data.AsSpan(r * vocab, vocab).ToArray();
        var dev = TestDevice.Backend;
        int hadA = 0, hadB = 0;
        for (int round = 0; round < 3; round++)
        {
            given.Clear();
            long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes, ups = dev.HostToDevice;
            int newA = a.SeenIds.Count - hadA, newB = b.SeenIds.Count - hadB;
            (hadA, hadB) = (a.SeenIds.Count, b.SeenIds.Count);
            var rows = TopKCandidates.ReadRows(logits, at, [new(3, Record(), seenA), new(2, Yes), new(1, Record(), seenB)]);
            if (onTestDevice)
            {
                Assert.That(dev.DeviceToHost - reads, Is.EqualTo(2), $"round {round}: values (top and seen), ids");
                Assert.That(dev.DeviceToHostBytes - bytes, Is.EqualTo(12L * 3 * 3 + 4L * (a.SeenIds.Count + b.SeenIds.Count)), $"round {round}: bytes");
                Assert.That(dev.HostToDevice - ups, Is.EqualTo((newA > 0 ? 1 : 0) + (newB > 0 ? 1 : 0)), $"round {round}: only new seen ids go up");
            }
            foreach (var (i, sampler) in new[] { (0, a), (2, b) })
            {
                var row = Row(at[i]);
                var top = row.Select((v, id) => (v, id)).OrderByDescending(x => x.v).ThenBy(x => x.id).Take(3).Select(x => x.id).ToArray();
                var want = top.Concat(sampler.SeenIds.Where(id => !top.Contains(id))).ToArray();
                Assert.That(rows[i].Ids, Is.EqualTo(want), $"round {round} entry {i}: the top 3, then the seen ids outside them");
                Assert.That(rows[i].Values, Is.EqualTo(want.Select(id => row[id])), $"round {round} entry {i}: their values");
                Assert.That(rows[i].Top, Is.EqualTo(3));
                Assert.That(given, Has.Some.Matches<(int[] Ids, float[] Values, int Top)>(g => g.Ids.SequenceEqual(want) && g.Top == 3), $"round {round} entry {i}: the check saw them");
            }
            Assert.That(rows[1].Ids, Has.Length.EqualTo(3), "the plain row: its top ones only");
            // Picks: a new id into a's seen set and one seen before into b's (one upload next round, for a only).
            var pickNew = Enumerable.Repeat(-5f, vocab).ToArray();
            pickNew[10 + round] = 5;
            Assert.That(a.Next(pickNew), Is.EqualTo(10 + round));
            var pickSeen = Enumerable.Repeat(-5f, vocab).ToArray();
            pickSeen[21] = 5;
            Assert.That(b.Next(pickSeen), Is.EqualTo(21));
        }
        Assert.That(a.SeenIds, Is.EqualTo(new[] { 39, 0, 5, 17, 10, 11, 12 }));
        Assert.That(b.SeenIds, Is.EqualTo(new[] { 21, 3 }));
    }

    /// <summary>A row whose seen ids would read as many bytes as the row (3·count + seen ≥ vocabulary) is read whole.</summary>
    [Test]
    public void TooManySeenIdsReadTheRow()
    {
        const int vocab = 20;
        var data = Enumerable.Range(0, vocab).Select(i => (float)i).ToArray();
        using var logits = Tensor.FromArray(data, TestDevice.Get(), 1, vocab);
        var options = new GenerationOptions { Temperature = 1, TopK = 2, RepetitionPenalty = 2 };
        var few = new TokenSampler(options, vocab, Enumerable.Range(0, 13));
        var many = new TokenSampler(options, vocab, Enumerable.Range(0, 14));
        using var fewSeen = new DeviceSeenIds(few);
        using var manySeen = new DeviceSeenIds(many);
        Assert.That(TopKCandidates.ReadRows(logits, [0], [new(2, Yes, fewSeen)])[0].Logits, Is.Null, "3·2 + 13 < 20");
        Assert.That(TopKCandidates.ReadRows(logits, [0], [new(2, Yes, manySeen)])[0].Logits, Is.EqualTo(data), "3·2 + 14 = 20");
    }

    [Test]
    public void BadInputIsNamed()
    {
        using var logits = Tensor.Zeros([3, 10]);
        Assert.That(() => TopKCandidates.ReadRows(logits, [3], [new(1, Yes)]), Throws.ArgumentException.With.Message.Contains("row 3 of 3 rows"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [0], [new(1, Yes), new(2, Yes)]), Throws.ArgumentException.With.Message.Contains("1 rows with 2 candidate asks"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [0], [new(11, Yes)]), Throws.ArgumentException.With.Message.Contains("11 candidates from a row of 10"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [0], [new(0, Yes)]), Throws.ArgumentException.With.Message.Contains("0 candidates"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [1], [new(2, null!)]), Throws.ArgumentException.With.Message.Contains("row 1 asks for candidates with no check"));
        Assert.That(() => TopKCandidates.ReadRows(logits.Reshape(30), [0], [new(1, Yes)]), Throws.ArgumentException.With.Message.Contains("rank 1"));
        Assert.That(() => TopKCandidates.Read(logits, [new(1, Yes)]), Throws.ArgumentException.With.Message.Contains("1 candidate asks (none null) for 3 rows"));
        Assert.That(() => KvCacheModel.CheckPicks(2, [true, false], [new(3, Yes), null]), Throws.ArgumentException.With.Message.Contains("row 0 is greedy and asks for 3 candidates"));
        Assert.That(() => KvCacheModel.CheckPicks(2, [true], [null, null]), Throws.ArgumentException.With.Message.Contains("1 greedy flags, 2 candidate asks for 2 rows"));
        var sampler = new TokenSampler(new GenerationOptions { RepetitionPenalty = 1.1 }, 10, [1]);
        var seen = new DeviceSeenIds(sampler);
        seen.Dispose();
        Assert.That(() => seen.On(Device.Cpu), Throws.InstanceOf<ObjectDisposedException>());
    }
}
