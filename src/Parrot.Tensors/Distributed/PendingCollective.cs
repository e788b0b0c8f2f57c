using System.Diagnostics;

namespace Parrot.Tensors.Distributed;

/// <summary>
/// A collective that was started and may still be running (so the caller can pack the next gradient bucket
/// meanwhile). <see cref="Wait"/> completes it or throws <see cref="CollectiveTimeoutException"/> when the
/// group's timeout passes first; the tensors it reads or writes must not be touched until then.
/// </summary>
public abstract class PendingCollective
{
    /// <summary>A collective that finished when it was started (world size 1).</summary>
    public static PendingCollective Done { get; } = new Completed();

    /// <summary>True once the collective has completed (drives progress; never blocks).</summary>
    public abstract bool Test();

    /// <summary>Blocks until the collective completes; throws when the group's timeout passes first.</summary>
    public abstract void Wait();

    /// <summary>Waits for each of <paramref name="pending"/> in order.</summary>
    public static void WaitAll(IEnumerable<PendingCollective> pending)
    {
        ArgumentNullException.ThrowIfNull(pending);
        foreach (var p in pending) p.Wait();
    }

    /// <summary>
    /// Polls <see cref="Test"/> until it is true; past <paramref name="group"/>'s timeout the group is marked broken
    /// and a <see cref="CollectiveTimeoutException"/> names <paramref name="what"/> and <paramref name="consequence"/>.
    /// <paramref name="pause"/> gets the poll count and spins or sleeps between polls (each backend's own pacing).
    /// </summary>
    protected void PollUntilDone(ProcessGroup group, string what, string consequence, Action<int> pause)
    {
        var clock = Stopwatch.StartNew();
        int polls = 0;
        while (!Test())
        {
            if (clock.Elapsed > group.Timeout)
            {
                group.IsBroken = true;
                throw new CollectiveTimeoutException($"{what} on {group} did not complete within {group.Timeout.TotalSeconds:G4} s: " +
                    $"a peer rank died or hangs (the limit is PARROT_DIST_TIMEOUT seconds); {consequence}");
            }
            pause(++polls);
        }
    }

    private sealed class Completed : PendingCollective
    {
        public override bool Test() => true;
        public override void Wait() { }
    }
}
