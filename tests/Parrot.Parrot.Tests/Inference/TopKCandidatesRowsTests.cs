using Parrot.Parrot.Inference;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// <see cref="TopKCandidates.ReadRows"/>, the continuous batch's read of chosen rows of [S, vocab] logits: candidate rows
/// get the top values and ids at the largest count asked (ties by lower id), refused and count-0 rows their whole row, in
/// the entries' order, on the CPU and the test device (two reads for the candidates, one for the whole rows); bad input
/// named.
/// </summary>
public class TopKCandidatesRowsTests
{
    [Test]
    public void ChosenRowsAreReadAsCandidatesOrWhole([Values(false, true)] bool onTestDevice)
    {
        const int s = 5, vocab = 30;
        var rng = new Random(3);
        // Rounded to quarters: ties occur.
        var data = Enumerable.Range(0, s * vocab).Select(_ => (float)Math.Round(rng.NextDouble() * 8) / 4).ToArray();
        var device = onTestDevice ? TestDevice.Get() : Device.Cpu;
        using var logits = Tensor.FromArray(data, device, s, vocab);
        int[] at = [3, 1, 4, 0], counts = [2, 0, 6, 3];
        CandidateCheck yes = (_, _) => true, no = (_, _) => false;
        var dev = TestDevice.Backend;
        long reads = dev.DeviceToHost, bytes = dev.DeviceToHostBytes;
        var rows = TopKCandidates.ReadRows(logits, at, counts, [yes, null, yes, no]);
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
        }
    }

    [Test]
    public void BadInputIsNamed()
    {
        using var logits = Tensor.Zeros([3, 10]);
        CandidateCheck yes = (_, _) => true;
        Assert.That(() => TopKCandidates.ReadRows(logits, [3], [1], [yes]), Throws.ArgumentException.With.Message.Contains("row 3 of 3 rows"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [0], [1, 2], [yes]), Throws.ArgumentException.With.Message.Contains("1 rows with 2 candidate counts and 1 checks"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [0], [11], [yes]), Throws.ArgumentException.With.Message.Contains("11 candidates from a row of 10"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [0], [-1], [yes]), Throws.ArgumentException.With.Message.Contains("-1 candidates"));
        Assert.That(() => TopKCandidates.ReadRows(logits, [1], [2], [null]), Throws.ArgumentException.With.Message.Contains("row 1 asks for candidates with no check"));
        Assert.That(() => TopKCandidates.ReadRows(logits.Reshape(30), [0], [1], [yes]), Throws.ArgumentException.With.Message.Contains("rank 1"));
        Assert.That(() => KvCacheModel.CheckPicks(2, [true, false], [3, 0], [yes, null]), Throws.ArgumentException.With.Message.Contains("row 0 is greedy and asks for 3 candidates"));
        Assert.That(() => KvCacheModel.CheckPicks(2, [true], [0, 0], [null, null]), Throws.ArgumentException.With.Message.Contains("1 greedy flags, 2 candidate counts, 2 checks for 2 rows"));
    }
}
