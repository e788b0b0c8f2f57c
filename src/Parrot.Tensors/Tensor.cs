using System.Runtime.CompilerServices;
using System.Text;

namespace Parrot.Tensors;

/// <summary>
/// An n-dimensional array: a view (shape, strides in elements, offset) over a reference-counted
/// <see cref="Storage"/>. Views share storage and never copy. Disposing a tensor releases its hold on
/// the storage; the memory goes when the last view is disposed. Tensors created inside a
/// <see cref="TensorScope"/> are disposed with it unless kept.
/// </summary>
public sealed partial class Tensor : IDisposable
{
    private readonly int[] _shape;
    private readonly long[] _strides;
    private Storage? _storage;

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Offset of element [0,...,0] from the start of the storage, in elements.</summary>
    public long Offset { get; }

    /// <summary>Number of elements.</summary>
    public long Count { get; }

    internal Tensor(Storage storage, int[] shape, long[] strides, long offset, DType dtype, bool retain)
    {
        if (retain) storage.Retain();
        _storage = storage;
        _shape = shape;
        _strides = strides;
        Offset = offset;
        DType = dtype;
        long n = 1;
        foreach (var d in shape) n *= d;
        Count = n;
        TensorScope.Register(this);
    }

    /// <summary>Sizes of the dimensions.</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>Steps between neighbouring elements along each dimension, in elements (0 for broadcast dims).</summary>
    public ReadOnlySpan<long> Strides => _strides;

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>The device the storage lives on.</summary>
    public Device Device => Storage.Device;

    /// <summary>The storage (throws if this tensor was disposed).</summary>
    public Storage Storage => _storage ?? throw new ObjectDisposedException(nameof(Tensor), $"tensor {ShapeString(_shape)} {DType.Name()} was disposed");

    /// <summary>
    /// True when this tensor is the only view of its storage and covers all of it, contiguously from its start: nothing
    /// else can see or change these bytes, so a consumer that would clone it may keep an alias instead.
    /// </summary>
    public bool IsSoleOwner => _storage is { } s && s.Users == 1 && Offset == 0 && IsContiguous && Count * ElementSize == s.Bytes;

    /// <summary>True once <see cref="Dispose"/> has run.</summary>
    public bool IsDisposed => _storage is null;

    /// <summary>The backend that computes on this tensor's device.</summary>
    public IBackend Backend => Backends.For(Device);

    /// <summary>Size of dimension <paramref name="axis"/> (negative counts from the end).</summary>
    public int Dim(int axis) => _shape[NormalizeAxis(axis, Rank, "Dim")];

    /// <summary>Stride of dimension <paramref name="axis"/> (negative counts from the end).</summary>
    public long Stride(int axis) => _strides[NormalizeAxis(axis, Rank, "Stride")];

    /// <summary>Bytes per element.</summary>
    public int ElementSize => DType.SizeOf();

    /// <summary>True when elements are laid out in C order with no gaps.</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (_shape[i] == 1) continue;
                if (_strides[i] != expected) return false;
                expected *= _shape[i];
            }
            return true;
        }
    }

    /// <summary>Address of element [0,...,0] (CPU tensors; device address for CUDA tensors).</summary>
    public nint DataPointer => Storage.Pointer + (nint)(Offset * ElementSize);

    /// <summary>Throws <see cref="ObjectDisposedException"/> naming <paramref name="op"/> when disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnsureAlive(string op)
    {
        if (_storage is null) Throw(op);
        void Throw(string o) => throw new ObjectDisposedException(nameof(Tensor), $"{o}: tensor {ShapeString(_shape)} {DType.Name()} was disposed");
    }

    /// <summary>Releases this view's hold on the storage. Safe to call twice.</summary>
    public void Dispose()
    {
        var s = Interlocked.Exchange(ref _storage, null);
        s?.Release();
    }

    /// <summary>Shape as "[2, 3]".</summary>
    public string ShapeString() => ShapeString(_shape);

    /// <summary>Formats a shape as "[2, 3]".</summary>
    public static string FormatShape(ReadOnlySpan<int> shape) => ShapeString(shape);

    internal static string ShapeString(ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < shape.Length; i++) { if (i > 0) sb.Append(", "); sb.Append(shape[i]); }
        return sb.Append(']').ToString();
    }

    /// <summary>Turns a possibly negative axis into 0..rank-1, or throws naming the op.</summary>
    public static int NormalizeAxis(int axis, int rank, string op)
    {
        int a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= rank)
            throw new ArgumentOutOfRangeException(nameof(axis), $"{op}: axis {axis} is out of range for a tensor of rank {rank}");
        return a;
    }

    /// <summary>C-order strides for <paramref name="shape"/>.</summary>
    public static long[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    /// <summary>A short description: shape, dtype, device and the first values.</summary>
    public override string ToString()
    {
        if (IsDisposed) return $"Tensor({ShapeString()}, {DType.Name()}, disposed)";
        var sb = new StringBuilder($"Tensor({ShapeString()}, {DType.Name()}, {Device}");
        if (Device.Kind == DeviceKind.Cpu && Count > 0)
        {
            var vals = Narrowed(Math.Min(Count, 8));
            sb.Append(", [").Append(string.Join(", ", vals.Select(v => v.ToString("G6", System.Globalization.CultureInfo.InvariantCulture))));
            if (Count > 8) sb.Append(", ...");
            sb.Append(']');
        }
        return sb.Append(')').ToString();
    }

    private double[] Narrowed(long n)
    {
        using var flat = Reshape(-1);
        using var head = flat.Narrow(0, 0, (int)n);
        return head.ToDoubleArray();
    }
}
