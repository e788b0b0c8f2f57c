// Rotary position embedding, Hugging Face rotate-half convention, over the last axis of length 2h.
// `L` lays out [..., h] (operands: y, x, cos, sin); *last are each operand's last-axis stride, so the
// partner of element d is d + h. Each product is rounded before the sum (no fused multiply-add), as PyTorch.
#include "prelude.cuh"

extern "C" __global__ void rope(Layout L, i64 n, i64 half, void* y, i64 ylast, const void* x, i64 xlast,
                                const void* c, const void* s, int tdt, i64 clast, i64 slast, int dt)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 4, o);
        i64 yh = half * ylast, xh = half * xlast, ch = half * clast, sh = half * slast;
        if (dt == DT_F64)
        {
            double a = load<double>(x, dt, o[1]), b = load<double>(x, dt, o[1] + xh);
            double r0 = __dsub_rn(__dmul_rn(a, load<double>(c, tdt, o[2])), __dmul_rn(b, load<double>(s, tdt, o[3])));
            double r1 = __dadd_rn(__dmul_rn(b, load<double>(c, tdt, o[2] + ch)), __dmul_rn(a, load<double>(s, tdt, o[3] + sh)));
            store<double>(y, dt, o[0], r0);
            store<double>(y, dt, o[0] + yh, r1);
        }
        else
        {
            float a = load<float>(x, dt, o[1]), b = load<float>(x, dt, o[1] + xh);
            float r0 = __fsub_rn(__fmul_rn(a, load<float>(c, tdt, o[2])), __fmul_rn(b, load<float>(s, tdt, o[3])));
            float r1 = __fadd_rn(__fmul_rn(b, load<float>(c, tdt, o[2] + ch)), __fmul_rn(a, load<float>(s, tdt, o[3] + sh)));
            store<float>(y, dt, o[0], r0);
            store<float>(y, dt, o[0] + yh, r1);
        }
    }
}
