using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// The bookkeeping a CUDA graph uses for the index checks it records (CudaBackend.Capture / CudaGraph.Replay): taken
/// out of the pending list at the end of a capture (they were recorded, not run), pending again after every replay.
/// On the test device the check kernels run eagerly, which stands in for a replay having written the slots.
/// </summary>
public class CapturedIndexCheckTests
{
    [Test]
    public void ChecksTakenAtTheEndOfACaptureReportAgainOnlyAfterTheyAreRearmed()
    {
        var dev = TestDevice.Get();
        var checks = TestDevice.Backend.IndexChecks;
        using (var v = Tensor.Zeros([1], DType.F32, dev)) _ = v.Item(); // nothing pending from earlier tests
        using var table = Tensor.Ones([10, 4], DType.F32, dev);
        using var ids = Tensor.FromArray(new long[] { 3, 12, 5 }, dev, 3);
        using var rows = Tensor.Embedding(table, ids);
        Assert.That(checks.Pending, Is.EqualTo(1));

        var captured = checks.TakeCaptured();
        Assert.That(captured, Has.Length.EqualTo(1));
        Assert.That(checks.Pending, Is.Zero);
        Assert.DoesNotThrow(() => rows.ToFloatArray(), "a recorded check is not a verdict until the graph runs");

        checks.Rearm(captured); // a replay ran the check again: its slot holds the bad id
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => rows.ToFloatArray());
        Assert.That(e!.Message, Does.Contain("id 12 at position [1]").And.Contain("10 rows"));
        Assert.That(checks.Pending, Is.Zero);

        // A replay must not start while other checks are pending: their slots would collide.
        using var more = Tensor.Embedding(table, ids);
        Assert.Throws<InvalidOperationException>(() => checks.Rearm(captured));
        Assert.Throws<ArgumentOutOfRangeException>(() => more.ToFloatArray());
    }

    [Test]
    public void EnsureSlotsMakesTheSlotsSoThatALaterCheckAllocatesNothing()
    {
        // CudaBackend.Capture calls EnsureSlots before recording: slots first made inside a capture would have their
        // "nothing bad" fill recorded into the graph instead of run.
        var dev = TestDevice.Get();
        var checks = new DeferredIndexChecks(TestDevice.Backend, dev);
        using var ids = Tensor.FromArray(new long[] { 3, 12, 5 }, dev, 3);
        var log = new List<long>();
        TestDevice.Backend.AllocationLog = log;
        try
        {
            checks.EnsureSlots();
            Assert.That(log, Is.EqualTo(new long[] { DeferredIndexChecks.Capacity * 2 * sizeof(long) }), "the slots, made now");
            checks.EnsureSlots();
            checks.Record(ids, 10, null, (v, at) => $"id {v} at {at}");
            Assert.That(log, Has.Count.EqualTo(1), "a second call and a recorded check allocate nothing");
        }
        finally { TestDevice.Backend.AllocationLog = null; }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => checks.Verify());
        Assert.That(e!.Message, Does.Contain("id 12 at 1"), "the slots were filled with 'nothing bad' before the check");
    }
}
