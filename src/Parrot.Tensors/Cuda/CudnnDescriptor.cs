using System.Runtime.CompilerServices;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// One cuDNN backend descriptor (cudnnBackendCreateDescriptor … SetAttribute … Finalize … Destroy). Every failure
/// throws <see cref="CudaException"/> naming the descriptor (its <see cref="Name"/>, e.g. "tensor Q") and the
/// attribute (the constant's name as written at the call site), so a rejected graph says which piece cuDNN refused.
/// Attribute element types follow cudnn_graph.h: enums are 4-byte ints, CUDNN_TYPE_BOOLEAN a 1-byte C++ bool.
/// </summary>
internal sealed unsafe class CudnnDescriptor : IDisposable
{
    private nint _handle;

    /// <summary>What this descriptor is, for error messages.</summary>
    internal string Name { get; }

    /// <summary>The raw cudnnBackendDescriptor_t.</summary>
    internal nint Handle => _handle != 0 ? _handle : throw new ObjectDisposedException(Name);

    private CudnnDescriptor(nint handle, string name) => (_handle, Name) = (handle, name);

    /// <summary>Creates a descriptor of <paramref name="type"/> (a <see cref="Cudnn.Descriptor"/> value).</summary>
    internal static CudnnDescriptor Create(int type, string name)
    {
        Cudnn.Check(Cudnn.cudnnBackendCreateDescriptor(type, out nint h), $"cudnnBackendCreateDescriptor({name})");
        return new CudnnDescriptor(h, name);
    }

    private void Set(int attribute, int type, long count, void* values, string? attributeName) =>
        Cudnn.Check(Cudnn.cudnnBackendSetAttribute(Handle, attribute, type, count, values), $"cudnnBackendSetAttribute({Name}, {Short(attributeName)})");

    private static string Short(string? expression) => expression is null ? "?" : expression[(expression.LastIndexOf('.') + 1)..];

    internal CudnnDescriptor Int64(int attribute, long value, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        Set(attribute, Cudnn.AttrType.Int64, 1, &value, name);
        return this;
    }

    internal CudnnDescriptor Int64s(int attribute, ReadOnlySpan<long> values, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        fixed (long* p = values) Set(attribute, Cudnn.AttrType.Int64, values.Length, p, name);
        return this;
    }

    /// <summary>A 4-byte enum attribute (data type, pointwise mode, reduction operator, heuristics mode, reordering).</summary>
    internal CudnnDescriptor Enum(int attribute, int type, int value, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        Set(attribute, type, 1, &value, name);
        return this;
    }

    internal CudnnDescriptor Bool(int attribute, bool value, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        byte b = value ? (byte)1 : (byte)0;
        Set(attribute, Cudnn.AttrType.Boolean, 1, &b, name);
        return this;
    }

    internal CudnnDescriptor Float(int attribute, float value, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        Set(attribute, Cudnn.AttrType.Float, 1, &value, name);
        return this;
    }

    internal CudnnDescriptor CudnnHandle(int attribute, nint handle, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        Set(attribute, Cudnn.AttrType.Handle, 1, &handle, name);
        return this;
    }

    internal CudnnDescriptor Descriptors(int attribute, ReadOnlySpan<nint> descriptors, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        fixed (nint* p = descriptors) Set(attribute, Cudnn.AttrType.BackendDescriptor, descriptors.Length, p, name);
        return this;
    }

    internal CudnnDescriptor Descriptor(int attribute, CudnnDescriptor d, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        nint h = d.Handle;
        Set(attribute, Cudnn.AttrType.BackendDescriptor, 1, &h, name);
        return this;
    }

    internal CudnnDescriptor Pointers(int attribute, ReadOnlySpan<nint> pointers, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        fixed (nint* p = pointers) Set(attribute, Cudnn.AttrType.VoidPtr, pointers.Length, p, name);
        return this;
    }

    /// <summary>cudnnBackendFinalize; throws naming the descriptor.</summary>
    internal CudnnDescriptor Finalized()
    {
        Cudnn.Check(Cudnn.cudnnBackendFinalize(Handle), $"cudnnBackendFinalize({Name})");
        return this;
    }

    /// <summary>cudnnBackendFinalize's status, for callers that treat a refusal as "not supported" rather than an error.</summary>
    internal int TryFinalize() => Cudnn.cudnnBackendFinalize(Handle);

    /// <summary>Reads one INT64 attribute (e.g. an execution plan's workspace size).</summary>
    internal long GetInt64(int attribute, [CallerArgumentExpression(nameof(attribute))] string? name = null)
    {
        long value = 0;
        Cudnn.Check(Cudnn.cudnnBackendGetAttribute(Handle, attribute, Cudnn.AttrType.Int64, 1, out _, &value), $"cudnnBackendGetAttribute({Name}, {Short(name)})");
        return value;
    }

    public void Dispose()
    {
        if (_handle == 0) return;
        Cudnn.cudnnBackendDestroyDescriptor(_handle);
        _handle = 0;
    }
}
