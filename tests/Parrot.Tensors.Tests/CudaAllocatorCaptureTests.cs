using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The caching allocator's rules for CUDA graph captures, over fake device memory (no GPU needed): a graph replays
/// with the addresses it was captured with, so no block it may touch can be handed to eager work while it lives.
/// </summary>
public class CudaAllocatorCaptureTests
{
    /// <summary>Hands out distinct fake addresses and remembers what went back to the "driver".</summary>
    private sealed class FakeMemory : CudaAllocator.IDeviceMemory
    {
        private ulong _next = 0x1000_0000;
        public readonly List<ulong> Freed = new();
        public int Allocations, Syncs;
        public long Limit = long.MaxValue, Used;

        public readonly List<bool> DuringCapture = new();

        public int Allocate(long bytes, bool duringCapture, out ulong ptr)
        {
            DuringCapture.Add(duringCapture);
            ptr = 0;
            if (Used + bytes > Limit) return 2; // CUDA_ERROR_OUT_OF_MEMORY
            Used += bytes;
            Allocations++;
            ptr = _next;
            _next += (ulong)bytes + 0x1000;
            return 0;
        }

        public void Free(ulong ptr) => Freed.Add(ptr);
        public void Synchronize() => Syncs++;
        public (long Free, long Total) Info() => (Limit - Used, Limit);
        public CudaProfiler.Mark BeginMark(string name) => default;
        public void EndMark(CudaProfiler.Mark mark) { }
    }

    [Test]
    public void BlocksOfALiveCaptureAreNeverHandedToEagerWork()
    {
        var mem = new FakeMemory();
        var a = new CudaAllocator(mem);
        ulong before = a.Allocate(4096, out long cls);
        a.Free(before, cls); // common free list

        var pool = a.BeginCapture();
        ulong inCapture = a.Allocate(4096, out _);
        Assert.That(inCapture, Is.EqualTo(before), "a capture takes free blocks of the common lists into its pool");
        a.Free(inCapture, cls);
        ulong again = a.Allocate(4096, out _);
        Assert.That(again, Is.EqualTo(inCapture), "within the capture its own freed blocks are reused (stream order holds)");
        a.Free(again, cls);
        a.EndCapture(pool);
        Assert.That(pool.FreeBlocks, Is.EqualTo(1));

        // Eager work after the capture: the pool's block is reserved for the graph, so a new one comes from the driver.
        int driverBefore = mem.Allocations;
        ulong eager = a.Allocate(4096, out _);
        Assert.That(eager, Is.Not.EqualTo(before));
        Assert.That(mem.Allocations, Is.EqualTo(driverBefore + 1));
        a.Free(eager, cls);

        // The graph is disposed: its blocks join the common lists.
        a.Release(pool);
        var got = new HashSet<ulong> { a.Allocate(4096, out _), a.Allocate(4096, out _) };
        Assert.That(got, Is.EquivalentTo(new[] { before, eager }));
        Assert.That(mem.Allocations, Is.EqualTo(driverBefore + 1), "both came from the cache");
    }

    [Test]
    public void ACacheMissDuringACaptureAsksForAnAllocationOutsideTheCapture()
    {
        // cuMemAlloc is prohibited in a thread-local capture: the driver memory must switch the thread to relaxed mode,
        // which it does only when told the allocation happens during one.
        var mem = new FakeMemory();
        var a = new CudaAllocator(mem);
        a.Allocate(4096, out _);
        var pool = a.BeginCapture();
        a.Allocate(4096, out _);
        a.EndCapture(pool);
        a.Allocate(4096, out _);
        Assert.That(mem.DuringCapture, Is.EqualTo(new[] { false, true, false }));
    }

    [Test]
    public void ABlockAllocatedBeforeTheCaptureAndFreedDuringItStaysWithTheGraph()
    {
        var a = new CudaAllocator(new FakeMemory());
        ulong input = a.Allocate(1 << 20, out long cls); // e.g. last step's tensor, read by the recorded work
        var pool = a.BeginCapture();
        a.Free(input, cls);                               // disposed inside the step, after the graph read it
        a.EndCapture(pool);
        ulong next = a.Allocate(1 << 20, out _);
        Assert.That(next, Is.Not.EqualTo(input), "a replay would still read it: eager work must not get it");
        Assert.That(pool.Blocks, Is.EqualTo(1));
        a.Release(pool);
        Assert.That(a.Allocate(1 << 20, out _), Is.EqualTo(input));
    }

    [Test]
    public void ABlockHeldPastTheCaptureReturnsToThePoolWhileTheGraphLivesAndToTheCacheAfter()
    {
        var a = new CudaAllocator(new FakeMemory());
        var pool = a.BeginCapture();
        ulong output = a.Allocate(512, out long cls); // a tensor the graph writes and the host keeps reading
        a.EndCapture(pool);
        a.Free(output, cls);
        Assert.That(pool.FreeBlocks, Is.EqualTo(1), "freed while the graph lives: still the graph's");
        Assert.That(a.Allocate(512, out _), Is.Not.EqualTo(output));

        var pool2 = a.BeginCapture();
        ulong held = a.Allocate(512, out _);
        a.EndCapture(pool2);
        a.Release(pool2);                              // graph gone while the tensor lives
        a.Free(held, cls);
        Assert.That(a.Allocate(512, out _), Is.EqualTo(held), "after the graph, its block is an ordinary cached block");
        a.Release(pool);
    }

    [Test]
    public void OutOfMemoryDuringACaptureIsFinalAndDoesNotWaitForTheStream()
    {
        var mem = new FakeMemory { Limit = 1 << 20 };
        var a = new CudaAllocator(mem);
        ulong cached = a.Allocate(4096, out long cls);
        a.Allocate(1 << 19, out _);
        var pool = a.BeginCapture();
        var e = Assert.Throws<CudaOutOfMemoryException>(() => a.Allocate(1 << 20, out _));
        Assert.That(e!.Message, Does.Contain("tried to allocate 1.00 MiB").And.Contain("during a CUDA graph capture"));
        Assert.That(mem.Syncs, Is.Zero, "emptying the cache would wait for the capturing stream");
        Assert.Throws<InvalidOperationException>(() => a.EmptyCache());
        a.EndCapture(pool);
        a.Release(pool);
        a.Free(cached, cls);
        a.EmptyCache();
        Assert.That(mem.Freed, Does.Contain(cached));
        Assert.That(mem.Syncs, Is.EqualTo(1));
    }

    [Test]
    public void OneCaptureAtATime()
    {
        var a = new CudaAllocator(new FakeMemory());
        var pool = a.BeginCapture();
        Assert.Throws<InvalidOperationException>(() => a.BeginCapture());
        a.EndCapture(pool);
        Assert.That(a.Capturing, Is.False);
        a.Release(pool);
        a.Release(pool); // twice is harmless
    }

    [Test]
    public void StatisticsCountPoolBlocksAsCached()
    {
        var a = new CudaAllocator(new FakeMemory());
        var pool = a.BeginCapture();
        ulong p = a.Allocate(2048, out long cls);
        Assert.That(a.InUse, Is.EqualTo(cls));
        a.Free(p, cls);
        a.EndCapture(pool);
        Assert.That((a.InUse, a.Cached), Is.EqualTo((0L, cls)));
        a.Release(pool);
        Assert.That((a.InUse, a.Cached), Is.EqualTo((0L, cls)));
    }
}

/// <summary><see cref="GraphedStep"/> off a GPU: every run issues the step (nothing captured).</summary>
public class GraphedStepTests
{
    [Test]
    public void WithoutACudaBackendEveryRunIsEager()
    {
        int issued = 0;
        using var state = Tensor.Zeros([3]);
        using var step = new GraphedStep(Device.Cpu, () => { issued++; using var next = state + 1.0; state.CopyFrom(next); });
        for (int i = 0; i < 3; i++) step.Run();
        Assert.That((issued, step.Captured, step.GraphNodes), Is.EqualTo((3, false, 0)));
        Assert.That(state.ToFloatArray(), Is.EqualTo(new[] { 3f, 3f, 3f }));
    }

    /// <summary>Counts replays; a capture made of it records nothing and runs nothing, as a real one.</summary>
    private sealed class FakeGraph : IReplayable
    {
        public int Replays, Disposals;
        public int Nodes => 7;
        public void Replay() => Replays++;
        public void Dispose() => Disposals++;
    }

    [Test]
    public void TheFirstRunIsEagerTheSecondCapturesAndReplaysAndTheRestReplay()
    {
        int issued = 0, captures = 0;
        var graph = new FakeGraph();
        var step = new GraphedStep(() => issued++, issue => { captures++; return graph; }, fallBackToEager: false);
        Assert.That(step.CapturesNext, Is.False);
        step.Run();
        Assert.That((issued, captures, graph.Replays, step.Captured, step.CapturesNext), Is.EqualTo((1, 0, 0, false, true)));
        step.Run();
        Assert.That((issued, captures, graph.Replays, step.Captured, step.GraphNodes, step.CapturesNext), Is.EqualTo((1, 1, 1, true, 7, false)), "captured (not run) and replayed once");
        step.Run();
        step.Run();
        Assert.That((issued, captures, graph.Replays), Is.EqualTo((1, 1, 3)));
        step.Dispose();
        Assert.That(graph.Disposals, Is.EqualTo(1));
    }

    [Test]
    public void AFailedCaptureThrowsOrFallsBackToEagerRunsThatStillIssueTheStep()
    {
        int issued = 0;
        var strict = new GraphedStep(() => issued++, _ => throw new InvalidOperationException("no capture here"), fallBackToEager: false);
        strict.Run();
        Assert.Throws<InvalidOperationException>(() => strict.Run());

        issued = 0;
        var lenient = new GraphedStep(() => issued++, _ => throw new InvalidOperationException("no capture here"), fallBackToEager: true);
        for (int i = 0; i < 4; i++) lenient.Run();
        Assert.That((issued, lenient.Captured, lenient.FallbackReason), Is.EqualTo((4, false, "no capture here")),
            "every run issued the step once: the failed capture's run too");
    }
}
