using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The packed GEMM's B panels, checked element by element against the layout written out here: micro-panel q holds
/// columns [q·nr, q·nr + nr) of the block, row k of the panel at k·nr, columns past the block's edge zero. For both
/// kernel widths (nr 16 and 64) whatever the machine, a block inside a larger matrix (offsets p0, j0), a partial last
/// panel, float32, bf16 and float16, and B row-major (read row by row across the panels), column-major (x · Wᵀ,
/// register transposes) and strided both ways.
/// </summary>
public class PackingTests
{
    [TestCase(16, 37, 100)]
    [TestCase(16, 512, 2048)]
    [TestCase(64, 33, 200)]
    [TestCase(64, 8, 64)]
    [TestCase(16, 5, 7)]
    public unsafe void PanelsHoldTheBlockInKernelOrder(int nr, int kc, int nc)
    {
        const int p0 = 3, j0 = 5;
        int rows = p0 + kc + 2, cols = j0 + nc + 3;
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (var layout in new[] { "row-major", "column-major", "strided" })
            {
                using var scope = TensorScope.Begin();
                Tensor b = layout switch
                {
                    "row-major" => Tensor.Normal([rows, cols], seed: 1, dtype: dtype),
                    "column-major" => Tensor.Normal([cols, rows], seed: 2, dtype: dtype).Transpose(0, 1),
                    _ => Tensor.Normal([rows * 2, cols * 3], seed: 3, dtype: dtype).Slice(0, 0, rows * 2, 2).Slice(1, 0, cols * 3, 3),
                };
                double[] values = b.ToDoubleArray();
                var view = new MatrixView(b.DataPointer, dtype, b.Strides[0], b.Strides[1]);
                int panels = (nc + nr - 1) / nr;
                var packed = new float[(long)panels * nr * kc];
                Array.Fill(packed, float.NaN);
                fixed (float* dst = packed) Packing.PackB(view, p0, j0, kc, nc, nr, dst);
                for (int q = 0; q < panels; q++)
                    for (int k = 0; k < kc; k++)
                        for (int t = 0; t < nr; t++)
                        {
                            int j = q * nr + t;
                            double expected = j < nc ? values[(long)(p0 + k) * cols + j0 + j] : 0;
                            float actual = packed[((long)q * kc + k) * nr + t];
                            if (actual != expected)
                                Assert.Fail($"nr {nr}, kc {kc}, nc {nc}, {dtype} {layout}: panel {q}, row {k}, column {t}: {actual} instead of {expected}");
                        }
            }
    }
}
