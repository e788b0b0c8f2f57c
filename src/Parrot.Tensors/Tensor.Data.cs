namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>The elements in C order as a .NET array of T (T must store this tensor's dtype).</summary>
    public unsafe T[] ToArray<T>() where T : unmanaged
    {
        EnsureAlive("ToArray");
        var want = DTypeOf<T>();
        if (want != DType) throw new ArgumentException($"ToArray: tensor is {DType.Name()}, asked for {typeof(T).Name} ({want.Name()}); convert with To() first");
        using var host = Device.Kind == DeviceKind.Cpu ? Contiguous() : To(Device.Cpu);
        var r = new T[Count];
        fixed (T* p = r) Buffer.MemoryCopy((void*)host.DataPointer, p, Count * sizeof(T), Count * sizeof(T));
        return r;
    }

    /// <summary>The raw bf16 bit patterns of a BF16 tensor, in C order.</summary>
    public unsafe ushort[] ToBFloat16Bits()
    {
        EnsureAlive("ToBFloat16Bits");
        if (DType != DType.BF16) throw new ArgumentException($"ToBFloat16Bits: tensor is {DType.Name()}");
        using var host = Device.Kind == DeviceKind.Cpu ? Contiguous() : To(Device.Cpu);
        var r = new ushort[Count];
        fixed (ushort* p = r) Buffer.MemoryCopy((void*)host.DataPointer, p, Count * 2, Count * 2);
        return r;
    }

    /// <summary>The elements converted to float32, in C order.</summary>
    public float[] ToFloatArray()
    {
        using var f = To(DType.F32, Device.Cpu);
        return f.ToArray<float>();
    }

    /// <summary>The elements converted to float64, in C order.</summary>
    public double[] ToDoubleArray()
    {
        using var f = To(DType.F64, Device.Cpu);
        return f.ToArray<double>();
    }

    /// <summary>The elements converted to int64, in C order.</summary>
    public long[] ToLongArray()
    {
        using var f = To(DType.I64, Device.Cpu);
        return f.ToArray<long>();
    }

    /// <summary>The value of a one-element tensor as a double.</summary>
    public double Item()
    {
        EnsureAlive("Item");
        if (Count != 1) throw new InvalidOperationException($"Item: tensor {ShapeString()} has {Count} elements, not 1");
        return ToDoubleArray()[0];
    }

    /// <summary>A span over the elements of a contiguous CPU tensor whose dtype is stored by T.</summary>
    public unsafe Span<T> AsSpan<T>() where T : unmanaged
    {
        EnsureAlive("AsSpan");
        if (Device.Kind != DeviceKind.Cpu) throw new InvalidOperationException($"AsSpan: tensor is on {Device}");
        if (!IsContiguous) throw new InvalidOperationException($"AsSpan: tensor {ShapeString()} is not contiguous");
        if (sizeof(T) != ElementSize) throw new ArgumentException($"AsSpan: {typeof(T).Name} does not match {DType.Name()}");
        return new Span<T>((void*)DataPointer, checked((int)Count));
    }
}
