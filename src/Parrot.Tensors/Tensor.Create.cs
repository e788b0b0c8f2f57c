namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>An uninitialised contiguous tensor.</summary>
    public static Tensor Empty(ReadOnlySpan<int> shape, DType dtype = DType.F32, Device? device = null) =>
        Allocate(shape, dtype, device ?? Device.Cpu, zero: false);

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(ReadOnlySpan<int> shape, DType dtype = DType.F32, Device? device = null) =>
        Allocate(shape, dtype, device ?? Device.Cpu, zero: true);

    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(ReadOnlySpan<int> shape, DType dtype = DType.F32, Device? device = null) => Full(shape, 1.0, dtype, device);

    /// <summary>A tensor filled with <paramref name="value"/> (converted to <paramref name="dtype"/>).</summary>
    public static Tensor Full(ReadOnlySpan<int> shape, double value, DType dtype = DType.F32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        t.Backend.Fill(t, value);
        return t;
    }

    /// <summary>A 0-dimensional tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.F32, Device? device = null) => Full([], value, dtype, device);

    /// <summary>start, start+step, ... up to (not including) end, as PyTorch's arange.</summary>
    public static Tensor Arange(double start, double end, double step = 1, DType dtype = DType.I64, Device? device = null)
    {
        if (step == 0 || double.IsNaN(step)) throw new ArgumentException("Arange: step must be non-zero", nameof(step));
        double len = Math.Ceiling((end - start) / step);
        if (double.IsNaN(len) || len > int.MaxValue) throw new ArgumentException($"Arange: invalid range [{start}, {end}) step {step}");
        int n = (int)Math.Max(0, len);
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = start + i * step;
        using var f = FromArray(values, n);
        return f.To(dtype, device);
    }

    /// <summary>0, 1, ..., n-1 as I64.</summary>
    public static Tensor Arange(int n, DType dtype = DType.I64, Device? device = null) => Arange(0, n, 1, dtype, device);

    /// <summary>Uniform random numbers on [low, high); the same bits for a seed whatever the thread count or device.</summary>
    public static Tensor Uniform(ReadOnlySpan<int> shape, ulong seed, double low = 0, double high = 1, DType dtype = DType.F32, Device? device = null)
    {
        RequireFloat(dtype, "Uniform");
        var t = Empty(shape, dtype, device);
        t.Backend.Random(t, RandomKind.Uniform, seed, low, high);
        return t;
    }

    /// <summary>Normal random numbers; the same for a seed whatever the thread count, within a few ulp across devices (<see cref="IBackend.Random"/>).</summary>
    public static Tensor Normal(ReadOnlySpan<int> shape, ulong seed, double mean = 0, double std = 1, DType dtype = DType.F32, Device? device = null)
    {
        RequireFloat(dtype, "Normal");
        var t = Empty(shape, dtype, device);
        t.Backend.Random(t, RandomKind.Normal, seed, mean, std);
        return t;
    }

    /// <summary>
    /// <see cref="Uniform"/> with the seed <paramref name="baseSeed"/> + counter[0] (wrapping), read on the counter's device,
    /// which then advances the counter by one there (<see cref="IBackend.RandomAt"/>): the k-th call on a counter that
    /// started at 0 gives Uniform's tensor for seed baseSeed + k, and a CUDA graph that records the call draws the next
    /// one on every replay. <paramref name="counter"/>: one contiguous int64 element; the result is on its device.
    /// </summary>
    public static Tensor UniformAt(ReadOnlySpan<int> shape, ulong baseSeed, Tensor counter, double low = 0, double high = 1, DType dtype = DType.F32) =>
        RandomAt(shape, RandomKind.Uniform, baseSeed, counter, low, high, dtype, "UniformAt");

    /// <summary><see cref="Normal"/> with the seed read on the device and advanced there, as <see cref="UniformAt"/>.</summary>
    public static Tensor NormalAt(ReadOnlySpan<int> shape, ulong baseSeed, Tensor counter, double mean = 0, double std = 1, DType dtype = DType.F32) =>
        RandomAt(shape, RandomKind.Normal, baseSeed, counter, mean, std, dtype, "NormalAt");

    private static Tensor RandomAt(ReadOnlySpan<int> shape, RandomKind kind, ulong baseSeed, Tensor counter, double p0, double p1, DType dtype, string op)
    {
        ArgumentNullException.ThrowIfNull(counter);
        RequireFloat(dtype, op);
        Cpu.CpuBackend.RequireCounter(counter, nameof(counter));
        var t = Empty(shape, dtype, counter.Device);
        try { t.Backend.RandomAt(t, kind, baseSeed, counter, p0, p1); }
        catch { t.Dispose(); throw; }
        return t;
    }

    /// <summary>A CPU tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-D).</summary>
    public static unsafe Tensor FromArray<T>(T[] data, params int[] shape) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        return FromSpan<T>(data, shape.Length == 0 ? [data.Length] : shape);
    }

    /// <summary>
    /// A tensor on <paramref name="device"/> holding a copy of <paramref name="data"/> with the given shape (default: 1-D):
    /// how models put host-made inputs (token ids, labels, masks) next to their parameters.
    /// </summary>
    public static Tensor FromArray<T>(T[] data, Device device, params int[] shape) where T : unmanaged
    {
        var host = FromArray(data, shape);
        if (device == Device.Cpu) return host;
        using (host) return host.To(device);
    }

    /// <summary>A CPU tensor holding a copy of <paramref name="data"/> with the given shape.</summary>
    public static unsafe Tensor FromSpan<T>(ReadOnlySpan<T> data, ReadOnlySpan<int> shape) where T : unmanaged
    {
        var dtype = DTypeOf<T>();
        long n = CheckShape(shape, "FromArray");
        if (n != data.Length)
            throw new ArgumentException($"FromArray: {data.Length} values cannot fill shape {ShapeString(shape)} ({n} elements)");
        var t = Empty(shape, dtype);
        fixed (T* p = data) Buffer.MemoryCopy(p, (void*)t.DataPointer, n * sizeof(T), n * sizeof(T));
        return t;
    }

    /// <summary>A BF16 tensor from raw bf16 bit patterns (1-D unless a shape is given).</summary>
    public static unsafe Tensor FromBFloat16Bits(ushort[] bits, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(bits);
        ReadOnlySpan<int> s = shape.Length == 0 ? [bits.Length] : shape;
        long n = CheckShape(s, "FromBFloat16Bits");
        if (n != bits.Length)
            throw new ArgumentException($"FromBFloat16Bits: {bits.Length} values cannot fill shape {ShapeString(s)} ({n} elements)");
        var t = Empty(s, DType.BF16);
        fixed (ushort* p = bits) Buffer.MemoryCopy(p, (void*)t.DataPointer, n * 2, n * 2);
        return t;
    }

    /// <summary>The dtype that stores .NET type T (float, double, Half, int, long, byte, bool).</summary>
    public static DType DTypeOf<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.F32;
        if (typeof(T) == typeof(double)) return DType.F64;
        if (typeof(T) == typeof(Half)) return DType.F16;
        if (typeof(T) == typeof(int)) return DType.I32;
        if (typeof(T) == typeof(long)) return DType.I64;
        if (typeof(T) == typeof(byte)) return DType.U8;
        if (typeof(T) == typeof(bool)) return DType.Bool;
        throw new NotSupportedException($"no dtype stores {typeof(T).Name} (bf16 bits: use FromBFloat16Bits)");
    }

    private static void RequireFloat(DType dtype, string op)
    {
        if (!dtype.IsFloat()) throw new ArgumentException($"{op}: dtype must be a float type, got {dtype.Name()}");
    }

    /// <summary>Validates a shape (no negative sizes, element count fits a long) and returns its element count.</summary>
    internal static long CheckShape(ReadOnlySpan<int> shape, string op)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"{op}: negative dimension in shape {ShapeString(shape)}");
            n = checked(n * d);
        }
        return n;
    }

    private static Tensor Allocate(ReadOnlySpan<int> shape, DType dtype, Device device, bool zero)
    {
        long n = CheckShape(shape, "Allocate");
        var storage = Backends.For(device).Allocate(checked(n * dtype.SizeOf()), zero);
        return new Tensor(storage, shape.ToArray(), ContiguousStrides(shape), 0, dtype, retain: false);
    }
}
