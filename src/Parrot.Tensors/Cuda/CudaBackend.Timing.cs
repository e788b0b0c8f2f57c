using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Median device time, in milliseconds, of <paramref name="work"/> (which queues work on this backend),
    /// measured with CUDA events on the stream after <paramref name="warmup"/> untimed runs.
    /// </summary>
    public double MedianMilliseconds(Action work, int warmup = 3, int repeats = 10)
    {
        ArgumentNullException.ThrowIfNull(work);
        for (int i = 0; i < warmup; i++) work();
        _context.Synchronize();
        _context.MakeCurrent();
        Driver.Check(Driver.cuEventCreate(out nint start, 0), "cuEventCreate");
        Driver.Check(Driver.cuEventCreate(out nint end, 0), "cuEventCreate");
        try
        {
            var times = new double[Math.Max(repeats, 1)];
            for (int i = 0; i < times.Length; i++)
            {
                Driver.Check(Driver.cuEventRecord(start, _context.Stream), "cuEventRecord");
                work();
                Driver.Check(Driver.cuEventRecord(end, _context.Stream), "cuEventRecord");
                Driver.Check(Driver.cuEventSynchronize(end), "cuEventSynchronize");
                Driver.Check(Driver.cuEventElapsedTime(out float ms, start, end), "cuEventElapsedTime");
                times[i] = ms;
            }
            Array.Sort(times);
            return times[times.Length / 2];
        }
        finally
        {
            Driver.cuEventDestroy(start);
            Driver.cuEventDestroy(end);
        }
    }
}
