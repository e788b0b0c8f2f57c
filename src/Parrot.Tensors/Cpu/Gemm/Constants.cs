namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// A compile-time integer carried by a type, so that one generic kernel body is specialised by the JIT into
/// a copy per tile size with every size test folded away and unused accumulators never allocated.
/// </summary>
internal interface IConstant
{
    /// <summary>The value.</summary>
    static abstract int Value { get; }
}

/// <summary>1</summary>
internal readonly struct One : IConstant { public static int Value => 1; }

/// <summary>2</summary>
internal readonly struct Two : IConstant { public static int Value => 2; }

/// <summary>3</summary>
internal readonly struct Three : IConstant { public static int Value => 3; }

/// <summary>4</summary>
internal readonly struct Four : IConstant { public static int Value => 4; }
