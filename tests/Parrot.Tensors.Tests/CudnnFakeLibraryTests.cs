using System.Runtime.InteropServices;
using Parrot.Tensors.Cuda;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The cuDNN SDPA plans (<see cref="CudnnGraphPlan"/>) driven through the real P/Invoke layer against a recording
/// stand-in for libcudnn.so.9 (tools/cudnn-fake/fake_cudnn.cpp, built and pointed at by tools/cudnn-fake/run.sh; ignored
/// otherwise). The stand-in checks what cuDNN's documentation states about using the API — each attribute's element
/// type, finalized descriptors of the right kind as attribute values, nothing set after finalize, the required
/// attributes, unique tensor ids, virtual tensors produced once, a variant pack binding exactly the graph's
/// non-virtual tensors — and reports the by-value scalars it received and the descriptors left alive. It proves the
/// marshalling and the protocol, not that real engines accept the graphs (that is the GPU run's selftest rows).
/// </summary>
public class CudnnFakeLibraryTests
{
    private nint _lib, _handle;

    [OneTimeSetUp]
    public void RequireTheStandIn()
    {
        if (Environment.GetEnvironmentVariable("PARROT_CUDNN_FAKE") != "1") Assert.Ignore("run by tools/cudnn-fake/run.sh, against a stand-in libcudnn.so.9");
        Assert.That(CudaLibrary.TryLoad(CudaLibrary.Cudnn, out _lib, out var where), Is.True, where);
        Assert.That(where, Does.Contain("cudnn-fake"), "the stand-in, not a real cuDNN");
        Cudnn.Check(Cudnn.cudnnCreate(out _handle), "cudnnCreate");
    }

    private unsafe string Report()
    {
        var report = (delegate* unmanaged<byte*, nuint, int>)NativeLibrary.GetExport(_lib, "fake_cudnn_report");
        var buf = new byte[1 << 16];
        fixed (byte* p = buf) report(p, (nuint)buf.Length);
        return System.Text.Encoding.UTF8.GetString(buf).TrimEnd('\0');
    }

    private unsafe void Reject(bool on) => RejectMode(on ? 1 : 0);

    /// <summary>0: heuristics find two engines; 1: none; 2: none for deterministic backwards (an older cuDNN).</summary>
    private unsafe void RejectMode(int mode) => ((delegate* unmanaged<int, void>)NativeLibrary.GetExport(_lib, "fake_cudnn_set_reject"))(mode);

    private unsafe void Workspace(long bytes) => ((delegate* unmanaged<long, void>)NativeLibrary.GetExport(_lib, "fake_cudnn_set_workspace"))(bytes);

    private static long[] Packed(int a, int b, int c, int d) => [(long)b * c * d, (long)c * d, d, 1];

    private static CudnnSdpaProblem Problem(bool backward, int h, int hkv, int t, int s, CudnnSdpaMask mask, bool stats, bool deterministic = false) =>
        new(backward, DType.BF16, 2, h, hkv, t, s, 64, 64, mask, stats, Packed(2, h, t, 64), Packed(2, hkv, s, 64), Packed(2, hkv, s, 64),
            Packed(2, h, t, 64), [(long)h * t, t, 1], backward ? Packed(2, h, t, 64) : null, backward ? Packed(2, h, t, 64) : null,
            backward ? Packed(2, hkv, s, 64) : null, backward ? Packed(2, hkv, s, 64) : null, deterministic);

    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(true, true)]
    public void PlansBuildAndExecuteThroughTheApi(bool current, bool negativeInfinity)
    {
        var style = current ? CudnnSdpaStyle.FrontendCurrent : CudnnSdpaStyle.Frontend15;
        Report();
        var problems = new[]
        {
            Problem(false, 4, 2, 128, 128, CudnnSdpaMask.TopLeft, stats: true),
            Problem(false, 4, 4, 64, 192, CudnnSdpaMask.BottomRight, stats: false),
            Problem(false, 4, 1, 64, 64, CudnnSdpaMask.None, stats: true),
            Problem(true, 4, 2, 64, 192, CudnnSdpaMask.BottomRight, stats: true),
            Problem(true, 4, 4, 128, 128, CudnnSdpaMask.TopLeft, stats: true),
            Problem(true, 4, 2, 64, 192, CudnnSdpaMask.BottomRight, stats: true, deterministic: true),
            Problem(true, 4, 4, 128, 128, CudnnSdpaMask.TopLeft, stats: true, deterministic: true),
            Problem(true, 4, 1, 64, 64, CudnnSdpaMask.None, stats: true, deterministic: true),
        };
        foreach (var p in problems)
        {
            var spec = p.Backward ? CudnnSdpaGraphs.Backward(p, style, negativeInfinity) : CudnnSdpaGraphs.Forward(p, style, negativeInfinity);
            using (var plan = new CudnnGraphPlan(spec, _handle))
            {
                Assert.That(plan.WorkspaceBytes, Is.EqualTo(4096), p.Key);
                Assert.That(plan.EngineIndex, Is.EqualTo(8), "the engine's global index, read back");
                Assert.That(plan.EngineNotes, Is.EqualTo("tensor core"), "the engine's numerical notes, read back and named");
                var backward = !p.Backward ? CudnnSdpaBackward.None : p.Deterministic ? CudnnSdpaBackward.Deterministic : CudnnSdpaBackward.Atomic;
                Assert.That(plan.Backward, Is.EqualTo(backward), $"{p.Key}: the backward graph, by what the plan binds");
                // The words for it (CudaBackend.CudnnAttentionPlan, the benchmarks' notes), as before the typed property.
                string dq = backward switch { CudnnSdpaBackward.Atomic => ", atomic dQ", CudnnSdpaBackward.Deterministic => ", deterministic dQ", _ => "" };
                Assert.That(CudaBackend.Summary(plan, 91300), Is.EqualTo($"cuDNN 91300, {plan.Style} graph{dq}, engine 8 (tensor core), workspace 4096 B"), p.Key);
                var pointers = plan.Uids.ToDictionary(u => u, u => (nint)(0x100000 * u));
                plan.Execute(_handle, pointers, 0.125f, 0x7000000);
                plan.Execute(_handle, pointers, 0.5f, 0x7000000);
                var log = Report();
                Assert.That(log, Does.Not.Contain("ERROR"), p.Key);
                var runs = log.Split('\n').Where(l => l.StartsWith("EXECUTE", StringComparison.Ordinal)).ToArray();
                Assert.That(runs, Has.Length.EqualTo(2), log);
                Assert.That(runs[0], Does.Contain(" 10=0.125"), "the scale, by value");
                Assert.That(runs[1], Does.Contain(" 10=0.5"), "the scale of the second call");
                var bound = spec.Bound.Where(t => !t.ByValue).Select(t => $" {t.Uid}");
                foreach (var b in bound) Assert.That(runs[0], Does.Contain(b + " ").Or.EndsWith(b), $"uid{b} bound");
                if (p.Mask == CudnnSdpaMask.BottomRight) Assert.That(runs[0], Does.Contain($" 22={p.S}").And.Contain($" 23={p.T}"));
                if (p.Mask != CudnnSdpaMask.None)
                    Assert.That(runs[0], Does.Contain(current && negativeInfinity ? " 20=-inf" : " 20=-3.40282e+38"));
                if (p.Backward) Assert.That(runs[0], Does.Contain(" 21=1"), "the constant one");
                var uids = runs[0].Split(' ').Skip(1).Select(u => u.Split('=')[0]).ToArray();
                if (p.Backward) Assert.That(uids.Contains("11"), Is.EqualTo(!p.Deterministic), $"{p.Key}: dQ_accum bound only by the atomic graph");
                if (p.Backward) Assert.That(uids.Contains("12"), Is.EqualTo(current), "softmax_sum bound in the current style, either algorithm");
            }
            Assert.That(Report(), Does.Contain("live 0 "), "every descriptor destroyed with the plan");
        }
    }

    [Test]
    public void WithoutAnEngineThePlanSaysSoAndLeaksNothing()
    {
        Report();
        Reject(true);
        try
        {
            var spec = CudnnSdpaGraphs.Forward(Problem(false, 4, 2, 64, 64, CudnnSdpaMask.TopLeft, stats: true));
            var e = Assert.Throws<CudaException>(() => new CudnnGraphPlan(spec, _handle));
            Assert.That(e!.Message, Does.Contain("no engine runs this graph"));
            Assert.That(Report(), Does.Contain("live 0 "));
        }
        finally
        {
            Reject(false);
        }
    }

    [Test]
    public void DeterministicAndAtomicPlansNeverStandInForEachOther()
    {
        // Through the plan cache (CudnnSdpa without a GPU context: the handle on the default stream).
        Report();
        using (var sdpa = new CudnnSdpa(null))
        try
        {
            var atomic = Problem(true, 4, 2, 128, 128, CudnnSdpaMask.TopLeft, stats: true);
            var det = atomic with { Deterministic = true };
            var a = sdpa.Plan(atomic, build: true, out var why);
            Assert.That(a, Is.Not.Null, why);
            var d = sdpa.Plan(det, build: true, out why);
            Assert.That(d, Is.Not.Null, why);
            Assert.That(d, Is.Not.SameAs(a), "two plans for two keys");
            Assert.That((a!.Binds(CudnnSdpaGraphs.UidDqAccum), d!.Binds(CudnnSdpaGraphs.UidDqAccum)), Is.EqualTo((true, false)));
            Assert.That((a.Backward, d.Backward), Is.EqualTo((CudnnSdpaBackward.Atomic, CudnnSdpaBackward.Deterministic)));
            Assert.That(d.Binds(CudnnSdpaGraphs.UidDq) && d.Binds(CudnnSdpaGraphs.UidSoftmaxSum), Is.True, "dQ written by the product; softmax_sum still bound (9.13: current style)");
            Assert.That(sdpa.Plan(det, build: false, out _), Is.SameAs(d), "kept");

            // An older cuDNN with no engine for the deterministic graph: that call is refused with the reason (our kernels
            // run it), the atomic graph of the same problem is not put in its place, and the refusal is remembered.
            RejectMode(2);
            var atomic2 = Problem(true, 4, 4, 64, 128, CudnnSdpaMask.None, stats: true);
            Assert.That(sdpa.Plan(atomic2 with { Deterministic = true }, build: true, out why), Is.Null);
            Assert.That(why, Does.Contain("refused the deterministic backward graph").And.Contain("no engine runs this graph"));
            Assert.That(sdpa.Plan(atomic2, build: true, out var whyAtomic), Is.Not.Null, whyAtomic);
            RejectMode(0);
            Assert.That(sdpa.Plan(atomic2 with { Deterministic = true }, build: true, out var again), Is.Null, "refused once, remembered");
            Assert.That(again, Is.EqualTo(why));

            // A deterministic plan whose workspace is over the limit: refused (our kernels), kept for a higher limit.
            Workspace(600L << 20);
            var big = Problem(true, 4, 2, 256, 256, CudnnSdpaMask.TopLeft, stats: true, deterministic: true);
            Assert.That(sdpa.Plan(big, build: true, out why, deterministicWorkspaceLimit: 512L << 20), Is.Null);
            Assert.That(why, Does.Contain("600 MiB workspace").And.Contain("512 MiB").And.Contain("PARROT_CUDNN_DETERMINISTIC_WORKSPACE_MB"));
            var kept = sdpa.Plan(big, build: false, out why, deterministicWorkspaceLimit: 1L << 30);
            Assert.That(kept, Is.Not.Null, why);
            Assert.That(kept!.WorkspaceBytes, Is.EqualTo(600L << 20));
            Assert.That(sdpa.Plan(big with { Deterministic = false }, build: true, out why, deterministicWorkspaceLimit: 0), Is.Not.Null, "the limit is the deterministic graph's");

            // The fake says 9.13: a backward over 64 keys (not a multiple of 128) is kept from cuDNN, either algorithm,
            // before any graph is built (cudnn-frontend's padding workaround up to 9.15.0 is not built here).
            foreach (bool deterministic in new[] { true, false })
            {
                Assert.That(sdpa.Plan(Problem(true, 4, 4, 64, 64, CudnnSdpaMask.None, stats: true, deterministic: deterministic), build: true, out why), Is.Null);
                Assert.That(why, Does.Contain("64 keys").And.Contain("padding-mask workaround"));
            }
            Assert.That(Report(), Does.Not.Contain("ERROR"));
        }
        finally
        {
            RejectMode(0);
            Workspace(4096); // what the other tests expect
        }
        Assert.That(Report(), Does.Contain("live 0 "), "every plan's descriptors destroyed with the cache");
    }

    [Test]
    public void TheStandInPassesTheVersionCheck()
    {
        Assert.That(CudnnSdpa.LibraryProblem(out long version), Is.Null);
        Assert.That(version, Is.EqualTo(91300));
        Assert.That(CudnnSdpa.StyleOrder(version)[0], Is.EqualTo(CudnnSdpaStyle.FrontendCurrent));
    }
}
