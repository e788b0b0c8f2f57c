using System.Diagnostics;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Low-latency fan-out for short parallel regions whose work is taken in grabs from a shared counter (the skinny
/// matrix products of decoding: ~170 per token, many of them 10–100 µs long). <see cref="CpuParallel.For"/> goes
/// through the thread pool, whose worker has usually gone to sleep by the next product and takes several
/// microseconds to wake, during which one core streams alone. Here <see cref="CpuParallel.Workers"/> − 1 helper
/// threads stay spinning for <see cref="SpinMicroseconds"/> after each region before they block, so back-to-back
/// products start on all cores at once. A helper that finds itself preempted while spinning (the machine has more
/// runnable threads than cores) stops spinning for <see cref="BackOffMilliseconds"/> and blocks at once instead.
/// <para>
/// The caller never waits for a helper to arrive: <see cref="Run"/> runs the body on the calling thread, then
/// closes the region; a helper that had not joined by then does not run it at all. The body must therefore be a
/// loop that takes its work from a shared counter until none is left (any number of threads may run it, from
/// one to all, and a thread may run it again after finishing it). A helper that joined is waited for (it may hold
/// a grab).
/// Calls from several threads at once, or from inside a region, fall back to <see cref="CpuParallel.For"/>.
/// </para>
/// </summary>
internal static class CpuTeam
{
    /// <summary>How long an idle helper spins before it blocks (decode runs its products a few µs apart).</summary>
    internal const int SpinMicroseconds = 100;

    private const int Closed = 1 << 30;

    private sealed class Region
    {
        public readonly Action Body;
        public int State; // helpers inside (low bits) | Closed
        public Exception? Error;

        public Region(Action body) => Body = body;
    }

    private sealed class Helper
    {
        public readonly SemaphoreSlim Wake = new(0);
        public int Sleeping;
    }

    private static readonly Lock Gate = new();
    private static Helper[] _helpers = [];
    private static Region? _current;
    private static int _sequence;
    private static int _busy;

    /// <summary>
    /// Runs <paramref name="body"/> on the calling thread and on up to <paramref name="threads"/> − 1 helpers
    /// that arrive before the caller has finished it; returns when every thread that ran it has finished.
    /// </summary>
    public static void Run(int threads, Action body)
    {
        if (threads <= 1) { body(); return; }
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            // Another thread's region (or this thread's own, nested) holds the helpers.
            CpuParallel.For(threads, _ => body());
            return;
        }
        try
        {
            EnsureHelpers(threads - 1);
            var region = new Region(body);
            Volatile.Write(ref _current, region);
            Interlocked.Increment(ref _sequence);
            var helpers = _helpers;
            for (int i = 0; i < threads - 1 && i < helpers.Length; i++)
                if (Volatile.Read(ref helpers[i].Sleeping) == 1 && Interlocked.Exchange(ref helpers[i].Sleeping, 0) == 1)
                    helpers[i].Wake.Release();
            Exception? own = null;
            try { body(); }
            catch (Exception e) { own = e; }
            Interlocked.Add(ref region.State, Closed);
            var spin = new SpinWait();
            while ((Volatile.Read(ref region.State) & ~Closed) != 0) spin.SpinOnce(sleep1Threshold: -1);
            Volatile.Write(ref _current, null);
            if (own is not null) throw own;
            if (region.Error is { } e2) throw new AggregateException(e2);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    private static void EnsureHelpers(int count)
    {
        if (_helpers.Length >= count) return;
        lock (Gate)
        {
            if (_helpers.Length >= count) return;
            var grown = new Helper[count];
            Array.Copy(_helpers, grown, _helpers.Length);
            for (int i = _helpers.Length; i < count; i++)
            {
                var h = grown[i] = new Helper();
                new Thread(() => Loop(h)) { IsBackground = true, Name = $"parrot-team-{i + 1}" }.Start();
            }
            _helpers = grown;
        }
    }

    /// <summary>A pause this long between two looks at the clock while spinning means the helper lost its core.</summary>
    private const int PreemptedMicroseconds = 50;

    /// <summary>How long a helper that lost its core while spinning blocks at once instead of spinning.</summary>
    private const int BackOffMilliseconds = 200;

    private static void Loop(Helper me)
    {
        int seen = Volatile.Read(ref _sequence);
        long spinTicks = Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
        long preemptedTicks = Stopwatch.Frequency * PreemptedMicroseconds / 1_000_000;
        long backOffTicks = Stopwatch.Frequency * BackOffMilliseconds / 1_000;
        long spinAgainAt = 0;
        while (true)
        {
            long idleSince = Stopwatch.GetTimestamp(), last = idleSince;
            int seq;
            while ((seq = Volatile.Read(ref _sequence)) == seen)
            {
                long now = Stopwatch.GetTimestamp();
                // On an oversubscribed machine a spinning helper is preempted, and spinning then only lowers its
                // priority with the scheduler against threads that slept, so that it starts late on the next
                // product: measured on this 2-core machine under a load of ~200, spinning lost ~6% against
                // blocking at once. Such a helper blocks right away for a while.
                if (now - last > preemptedTicks) spinAgainAt = now + backOffTicks;
                last = now;
                if (now - idleSince < spinTicks && now >= spinAgainAt)
                {
                    Thread.SpinWait(16);
                    continue;
                }
                Volatile.Write(ref me.Sleeping, 1);
                Interlocked.MemoryBarrier();
                if (Volatile.Read(ref _sequence) == seen) me.Wake.Wait();
                Volatile.Write(ref me.Sleeping, 0);
                idleSince = last = Stopwatch.GetTimestamp();
            }
            seen = seq;
            if (Volatile.Read(ref _current) is not { } region || !TryJoin(region)) continue;
            try { region.Body(); }
            catch (Exception e) { region.Error ??= e; }
            finally { Interlocked.Decrement(ref region.State); }
        }
    }

    private static bool TryJoin(Region region)
    {
        int s = Volatile.Read(ref region.State);
        while ((s & Closed) == 0)
        {
            int was = Interlocked.CompareExchange(ref region.State, s + 1, s);
            if (was == s) return true;
            s = was;
        }
        return false;
    }
}
