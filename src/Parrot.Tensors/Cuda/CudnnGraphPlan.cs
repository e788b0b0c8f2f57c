using System.Runtime.InteropServices;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// A <see cref="CudnnGraphSpec"/> lowered to cuDNN backend descriptors and finalized into an execution plan: tensors
/// (data type, dims, strides, uid, 16-byte alignment, virtual / by-value / reordering flags), operations, the
/// operation graph, heuristics (mode A, then FALLBACK), and the first engine configuration whose plan finalizes. The
/// attribute sequences are cudnn-frontend's (cudnn_frontend_Tensor.h, cudnn_frontend_PointWiseDesc.h,
/// cudnn_frontend_Operation.h, the reduction and matmul descriptors). Holds every descriptor alive for the plan's life
/// and a block of host memory for the by-value scalars (constants written once, the attention scale at each call).
/// </summary>
internal sealed unsafe class CudnnGraphPlan : IDisposable
{
    private readonly List<CudnnDescriptor> _keep = [];
    private readonly long[] _uids;
    private readonly Dictionary<long, int> _slot = [];
    private readonly byte* _scalars;
    private readonly CudnnDescriptor _plan;

    /// <summary>cuDNN's global index of the engine the plan runs (−1 when it could not be read): which kernel family won.</summary>
    internal long EngineIndex { get; private set; } = -1;

    /// <summary>
    /// The engine's numerical notes in words ("tensor core, nondeterministic", …; empty when cuDNN gives none or does not
    /// say): cuDNN's own word on the engine a plan runs, e.g. whether it adds in an order that varies run to run.
    /// </summary>
    internal string EngineNotes { get; private set; } = "";

    /// <summary>The backend's one-line description of this plan (<c>CudaBackend.CudnnAttentionPlan</c>), made on its first run.</summary>
    internal string? Summary { get; set; }

    /// <summary>Which frontend release's graph this plan runs (for notes and the bench).</summary>
    internal CudnnSdpaStyle Style { get; init; }

    /// <summary>Whether the variant pack binds <paramref name="uid"/> (optional scratch such as softmax_sum).</summary>
    internal bool Binds(long uid) => Array.IndexOf(_uids, uid) >= 0;

    /// <summary>
    /// Which SDPA backward graph this plan runs, by what it binds: none without dQ (a forward), the atomic one with the
    /// float32 dQ accumulator, else the deterministic one (read once, when planned: the backend notes it on every run).
    /// </summary>
    internal CudnnSdpaBackward Backward { get; }

    /// <summary>Device workspace bytes <see cref="Execute"/> must be given.</summary>
    internal long WorkspaceBytes { get; }

    /// <summary>The uids the variant pack binds, in the order <see cref="Execute"/> expects their pointers.</summary>
    internal IReadOnlyList<long> Uids => _uids;

    /// <summary>
    /// Lowers and plans <paramref name="spec"/> on <paramref name="handle"/>. Throws <see cref="CudaException"/> naming
    /// the descriptor and attribute cuDNN refused, or saying that no engine took the graph (with each engine's status).
    /// </summary>
    internal CudnnGraphPlan(CudnnGraphSpec spec, nint handle)
    {
        try
        {
            var tensors = new Dictionary<long, CudnnDescriptor>();
            foreach (var t in spec.Tensors) tensors[t.Uid] = Keep(Tensor(t));
            var ops = new List<nint>();
            foreach (var op in spec.Ops) ops.Add(Keep(Operation(op, tensors)).Handle);
            var graph = Keep(Finish(CudnnDescriptor.Create(Cudnn.Descriptor.OperationGraph, "operation graph"), g => g
                .CudnnHandle(Cudnn.Attr.OperationGraphHandle, handle)
                .Descriptors(Cudnn.Attr.OperationGraphOps, ops.ToArray())));
            _plan = Plan(graph, handle);
            WorkspaceBytes = Math.Max(0, _plan.GetInt64(Cudnn.Attr.ExecutionPlanWorkspaceSize));

            var bound = spec.Bound.ToArray();
            _uids = bound.Select(t => t.Uid).ToArray();
            Backward = !Binds(CudnnSdpaGraphs.UidDq) ? CudnnSdpaBackward.None
                : Binds(CudnnSdpaGraphs.UidDqAccum) ? CudnnSdpaBackward.Atomic : CudnnSdpaBackward.Deterministic;
            var scalars = bound.Where(t => t.ByValue).ToArray();
            _scalars = (byte*)NativeMemory.AllocZeroed((nuint)Math.Max(1, scalars.Length * 16));
            for (int i = 0; i < scalars.Length; i++)
            {
                _slot[scalars[i].Uid] = i * 16;
                if (spec.Constants.TryGetValue(scalars[i].Uid, out double value)) WriteScalar(scalars[i].Uid, scalars[i].DataType, value);
            }
        }
        catch
        {
            foreach (var d in _keep) d.Dispose();
            if (_scalars != null) NativeMemory.Free(_scalars);
            _freed = true;
            throw;
        }
    }

    private CudnnDescriptor Keep(CudnnDescriptor d)
    {
        _keep.Add(d);
        return d;
    }

    private void WriteScalar(long uid, int dataType, double value)
    {
        byte* p = _scalars + _slot[uid];
        if (dataType == Cudnn.DataType.Int32) *(int*)p = checked((int)value);
        else *(float*)p = (float)value;
    }

    private static CudnnDescriptor Tensor(CudnnTensorSpec t)
    {
        var d = CudnnDescriptor.Create(Cudnn.Descriptor.Tensor, $"tensor {t.Name} (uid {t.Uid})");
        try
        {
            d.Enum(Cudnn.Attr.TensorDataType, Cudnn.AttrType.DataType, t.DataType)
             .Int64s(Cudnn.Attr.TensorDimensions, t.Dims)
             .Int64s(Cudnn.Attr.TensorStrides, t.Strides)
             .Int64(Cudnn.Attr.TensorUniqueId, t.Uid)
             .Int64(Cudnn.Attr.TensorByteAlignment, 16);
            if (t.Virtual) d.Bool(Cudnn.Attr.TensorIsVirtual, true);
            if (t.ByValue) d.Bool(Cudnn.Attr.TensorIsByValue, true);
            if (t.Reordering != Cudnn.Reordering.None) d.Enum(Cudnn.Attr.TensorReorderingMode, Cudnn.AttrType.TensorReordering, t.Reordering);
            return d.Finalized();
        }
        catch { d.Dispose(); throw; }
    }

    private CudnnDescriptor Operation(CudnnOpSpec op, Dictionary<long, CudnnDescriptor> t)
    {
        switch (op)
        {
            case CudnnPointwiseSpec pw:
            {
                var desc = Keep(Finish(CudnnDescriptor.Create(Cudnn.Descriptor.Pointwise, $"pointwise {pw.Name}"), d =>
                {
                    d.Enum(Cudnn.Attr.PointwiseMode, Cudnn.AttrType.PointwiseMode, pw.Mode)
                     .Enum(Cudnn.Attr.PointwiseMathPrec, Cudnn.AttrType.DataType, pw.ComputeType);
                    if (pw.Mode == Cudnn.PointwiseMode.GenIndex) d.Int64(Cudnn.Attr.PointwiseAxis, pw.Axis);
                }));
                var o = CudnnDescriptor.Create(Cudnn.Descriptor.OperationPointwise, $"operation {pw.Name}");
                try
                {
                    o.Descriptor(Cudnn.Attr.OperationPointwisePwDescriptor, desc)
                     .Descriptor(Cudnn.Attr.OperationPointwiseXDesc, t[pw.X.Uid])
                     .Descriptor(Cudnn.Attr.OperationPointwiseYDesc, t[pw.Y.Uid])
                     .Float(Cudnn.Attr.OperationPointwiseAlpha1, 1f)
                     .Float(Cudnn.Attr.OperationPointwiseAlpha2, 1f);
                    if (pw.B is not null) o.Descriptor(Cudnn.Attr.OperationPointwiseBDesc, t[pw.B.Uid]);
                    if (pw.T is not null) o.Descriptor(Cudnn.Attr.OperationPointwiseTDesc, t[pw.T.Uid]);
                    return o.Finalized();
                }
                catch { o.Dispose(); throw; }
            }
            case CudnnReductionSpec r:
            {
                var desc = Keep(Finish(CudnnDescriptor.Create(Cudnn.Descriptor.Reduction, $"reduction {r.Name}"), d => d
                    .Enum(Cudnn.Attr.ReductionOperator, Cudnn.AttrType.ReductionOperator, r.Operator)
                    .Enum(Cudnn.Attr.ReductionCompType, Cudnn.AttrType.DataType, Cudnn.DataType.Float)));
                return Finish(CudnnDescriptor.Create(Cudnn.Descriptor.OperationReduction, $"operation {r.Name}"), o => o
                    .Descriptor(Cudnn.Attr.OperationReductionDesc, desc)
                    .Descriptor(Cudnn.Attr.OperationReductionXDesc, t[r.X.Uid])
                    .Descriptor(Cudnn.Attr.OperationReductionYDesc, t[r.Y.Uid]));
            }
            case CudnnMatmulSpec m:
            {
                var desc = Keep(Finish(CudnnDescriptor.Create(Cudnn.Descriptor.Matmul, $"matmul {m.Name}"), d => d
                    .Enum(Cudnn.Attr.MatmulCompType, Cudnn.AttrType.DataType, Cudnn.DataType.Float)));
                return Finish(CudnnDescriptor.Create(Cudnn.Descriptor.OperationMatmul, $"operation {m.Name}"), o => o
                    .Descriptor(Cudnn.Attr.OperationMatmulADesc, t[m.A.Uid])
                    .Descriptor(Cudnn.Attr.OperationMatmulBDesc, t[m.B.Uid])
                    .Descriptor(Cudnn.Attr.OperationMatmulCDesc, t[m.C.Uid])
                    .Descriptor(Cudnn.Attr.OperationMatmulDesc, desc));
            }
            case CudnnReshapeSpec r:
                return Finish(CudnnDescriptor.Create(Cudnn.Descriptor.OperationReshape, $"operation {r.Name}"), o => o
                    .Descriptor(Cudnn.Attr.OperationReshapeXDesc, t[r.X.Uid])
                    .Descriptor(Cudnn.Attr.OperationReshapeYDesc, t[r.Y.Uid]));
            default:
                throw new InvalidOperationException($"cuDNN graph: unknown operation {op}");
        }
    }

    private static CudnnDescriptor Finish(CudnnDescriptor d, Action<CudnnDescriptor> set)
    {
        try { set(d); return d.Finalized(); }
        catch { d.Dispose(); throw; }
    }

    /// <summary>Heuristics mode A, then FALLBACK: the first engine configuration whose execution plan finalizes.</summary>
    private CudnnDescriptor Plan(CudnnDescriptor graph, nint handle)
    {
        var refusals = new List<string>();
        foreach (int mode in new[] { Cudnn.HeurMode.A, Cudnn.HeurMode.Fallback })
        {
            using var heur = CudnnDescriptor.Create(Cudnn.Descriptor.EngineHeur, "engine heuristics");
            heur.Descriptor(Cudnn.Attr.EngineHeurOperationGraph, graph)
                .Enum(Cudnn.Attr.EngineHeurMode, Cudnn.AttrType.HeurMode, mode);
            int st = heur.TryFinalize();
            if (st != 0) { refusals.Add($"heuristics mode {mode}: status {st} {Cudnn.LastError()}"); continue; }
            Cudnn.Check(Cudnn.cudnnBackendGetAttribute(heur.Handle, Cudnn.Attr.EngineHeurResults, Cudnn.AttrType.BackendDescriptor, 0, out long count, null),
                "cudnnBackendGetAttribute(engine heuristics, EngineHeurResults count)");
            if (count <= 0) { refusals.Add($"heuristics mode {mode}: no engine"); continue; }
            var configs = new CudnnDescriptor[count];
            try
            {
                for (int i = 0; i < count; i++) configs[i] = CudnnDescriptor.Create(Cudnn.Descriptor.EngineCfg, $"engine config {i}");
                var raw = configs.Select(c => c.Handle).ToArray();
                long got;
                fixed (nint* p = raw)
                    Cudnn.Check(Cudnn.cudnnBackendGetAttribute(heur.Handle, Cudnn.Attr.EngineHeurResults, Cudnn.AttrType.BackendDescriptor, count, out got, p),
                        "cudnnBackendGetAttribute(engine heuristics, EngineHeurResults)");
                for (int i = 0; i < got; i++)
                {
                    var plan = CudnnDescriptor.Create(Cudnn.Descriptor.ExecutionPlan, $"execution plan (engine config {i})");
                    try
                    {
                        plan.CudnnHandle(Cudnn.Attr.ExecutionPlanHandle, handle)
                            .Descriptor(Cudnn.Attr.ExecutionPlanEngineConfig, configs[i]);
                        st = plan.TryFinalize();
                    }
                    catch { plan.Dispose(); throw; }
                    if (st == 0)
                    {
                        (EngineIndex, EngineNotes) = (GlobalIndex(configs[i]), NumericalNotes(configs[i]));
                        Keep(configs[i]);
                        configs[i] = null!;
                        return Keep(plan);
                    }
                    refusals.Add($"mode {mode} config {i}: status {st} {Cudnn.LastError()}".TrimEnd());
                    plan.Dispose();
                }
            }
            finally
            {
                foreach (var c in configs) c?.Dispose();
            }
        }
        throw new CudaException($"cuDNN: no engine runs this graph ({string.Join("; ", refusals.Take(6))})", Cudnn.Status.NotSupported);
    }

    /// <summary>The engine's global index behind an engine config (diagnostic: −1 when cuDNN does not say).</summary>
    private static long GlobalIndex(CudnnDescriptor config)
    {
        try
        {
            using var engine = CudnnDescriptor.Create(Cudnn.Descriptor.Engine, "engine");
            nint h = engine.Handle;
            if (Cudnn.cudnnBackendGetAttribute(config.Handle, Cudnn.Attr.EngineCfgEngine, Cudnn.AttrType.BackendDescriptor, 1, out _, &h) != 0) return -1;
            long index = -1;
            return Cudnn.cudnnBackendGetAttribute(engine.Handle, Cudnn.Attr.EngineGlobalIndex, Cudnn.AttrType.Int64, 1, out _, &index) == 0 ? index : -1;
        }
        catch (CudaException) { return -1; }
    }

    /// <summary>The numerical notes of the engine behind an engine config, in words (diagnostic: empty when cuDNN does not say).</summary>
    private static string NumericalNotes(CudnnDescriptor config)
    {
        try
        {
            using var engine = CudnnDescriptor.Create(Cudnn.Descriptor.Engine, "engine");
            nint h = engine.Handle;
            if (Cudnn.cudnnBackendGetAttribute(config.Handle, Cudnn.Attr.EngineCfgEngine, Cudnn.AttrType.BackendDescriptor, 1, out _, &h) != 0) return "";
            var notes = stackalloc int[16];
            if (Cudnn.cudnnBackendGetAttribute(engine.Handle, Cudnn.Attr.EngineNumericalNote, Cudnn.AttrType.NumericalNote, 16, out long n, notes) != 0) return "";
            var words = new List<string>();
            for (int i = 0; i < Math.Min(n, 16); i++)
                words.Add(notes[i] >= 0 && notes[i] < Cudnn.NumericalNoteNames.Length ? Cudnn.NumericalNoteNames[notes[i]] : $"note {notes[i]}");
            return string.Join(", ", words);
        }
        catch (CudaException) { return ""; }
    }

    /// <summary>
    /// Runs the plan on <paramref name="handle"/>'s stream: <paramref name="pointers"/> gives each uid of
    /// <see cref="Uids"/> its device pointer (by-value uids are filled here), the scale goes to its by-value slot,
    /// <paramref name="workspace"/> has <see cref="WorkspaceBytes"/>. Throws <see cref="CudaException"/> naming
    /// cudnnBackendExecute when cuDNN refuses.
    /// </summary>
    internal void Execute(nint handle, IReadOnlyDictionary<long, nint> pointers, float scale, nint workspace)
    {
        if (_slot.ContainsKey(CudnnSdpaGraphs.UidScale)) *(float*)(_scalars + _slot[CudnnSdpaGraphs.UidScale]) = scale;
        var ptrs = new nint[_uids.Length];
        for (int i = 0; i < _uids.Length; i++)
            ptrs[i] = _slot.TryGetValue(_uids[i], out int off) ? (nint)(_scalars + off)
                : pointers.TryGetValue(_uids[i], out var p) ? p : throw new InvalidOperationException($"cuDNN plan: no pointer for uid {_uids[i]}");
        using var pack = CudnnDescriptor.Create(Cudnn.Descriptor.VariantPack, "variant pack");
        pack.Int64s(Cudnn.Attr.VariantPackUniqueIds, _uids)
            .Pointers(Cudnn.Attr.VariantPackDataPointers, ptrs)
            .Pointers(Cudnn.Attr.VariantPackWorkspace, [workspace])
            .Finalized();
        Cudnn.Check(Cudnn.cudnnBackendExecute(handle, _plan.Handle, pack.Handle), "cudnnBackendExecute");
    }

    public void Dispose()
    {
        for (int i = _keep.Count - 1; i >= 0; i--) _keep[i].Dispose();
        _keep.Clear();
        if (_scalars != null && !_freed) NativeMemory.Free(_scalars);
        _freed = true;
    }

    private bool _freed;
}
