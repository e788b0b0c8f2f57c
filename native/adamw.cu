// AdamW with PyTorch's order of operations, in place over contiguous tensors:
// p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p − step·m / (√v / √bc2 + ε).
// The master copy p and the moments m, v are float32 (or float64); g is any float dtype. When `bf16_out`
// is not null, the updated weights are also written there in bf16 (the copy the matrix units read).
#include "prelude.cuh"

extern "C" __global__ void adamw(i64 n, void* p, const void* g, int gdt, void* m, void* v, int pdt,
                                 double decay, double beta1, double beta2, double eps, double step_size, double bc2_sqrt, u16* bf16_out)
{
    GRID_STRIDE_LOOP(i, n)
    {
        if (pdt == DT_F64)
        {
            double* pp = (double*)p; double* mp = (double*)m; double* vp = (double*)v;
            double gr = load<double>(g, gdt, i);
            double w = pp[i] * decay;
            double mi = beta1 * mp[i] + (1 - beta1) * gr;
            double vi = beta2 * vp[i] + (1 - beta2) * gr * gr;
            w -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
            pp[i] = w; mp[i] = mi; vp[i] = vi;
            if (bf16_out) bf16_out[i] = f32_to_bf16((float)w);
        }
        else
        {
            float* pp = (float*)p; float* mp = (float*)m; float* vp = (float*)v;
            float gr = load<float>(g, gdt, i);
            float w = pp[i] * (float)decay;
            float mi = (float)beta1 * mp[i] + (float)(1 - beta1) * gr;
            float vi = (float)beta2 * vp[i] + (float)(1 - beta2) * gr * gr;
            w -= (float)step_size * mi / (sqrtf(vi) / (float)bc2_sqrt + (float)eps);
            pp[i] = w; mp[i] = mi; vp[i] = vi;
            if (bf16_out) bf16_out[i] = f32_to_bf16(w);
        }
    }
}

// Multi-tensor AdamW: up to ADAMW_TABLE tensors per launch, blockIdx.y picks the tensor, blocks stride over
// its elements. Same arithmetic as `adamw`; the table travels by value in the kernel parameters.
#define ADAMW_TABLE 64

struct AdamWEntry
{
    void* p;
    const void* g;
    void* m;
    void* v;
    u16* bf16_out;
    i64 n;
    int gdt, pdt;
};

struct AdamWTable
{
    AdamWEntry e[ADAMW_TABLE];
};

extern "C" __global__ void adamw_multi(AdamWTable table, int count, double decay, double beta1, double beta2, double eps,
                                       double step_size, double bc2_sqrt)
{
    if ((int)blockIdx.y >= count) return;
    const AdamWEntry& t = table.e[blockIdx.y];
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < t.n; i += (i64)blockDim.x * gridDim.x)
    {
        if (t.pdt == DT_F64)
        {
            double* pp = (double*)t.p; double* mp = (double*)t.m; double* vp = (double*)t.v;
            double gr = load<double>(t.g, t.gdt, i);
            double w = pp[i] * decay;
            double mi = beta1 * mp[i] + (1 - beta1) * gr;
            double vi = beta2 * vp[i] + (1 - beta2) * gr * gr;
            w -= step_size * mi / (sqrt(vi) / bc2_sqrt + eps);
            pp[i] = w; mp[i] = mi; vp[i] = vi;
            if (t.bf16_out) t.bf16_out[i] = f32_to_bf16((float)w);
        }
        else
        {
            float* pp = (float*)t.p; float* mp = (float*)t.m; float* vp = (float*)t.v;
            float gr = load<float>(t.g, t.gdt, i);
            float w = pp[i] * (float)decay;
            float mi = (float)beta1 * mp[i] + (float)(1 - beta1) * gr;
            float vi = (float)beta2 * vp[i] + (float)(1 - beta2) * gr * gr;
            w -= (float)step_size * mi / (sqrtf(vi) / (float)bc2_sqrt + (float)eps);
            pp[i] = w; mp[i] = mi; vp[i] = vi;
            if (t.bf16_out) t.bf16_out[i] = f32_to_bf16(w);
        }
    }
}
