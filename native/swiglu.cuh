// The SwiGLU arithmetic, one element: y = silu(g) · u, shared by the elementwise kernels (native/elementwise.cu) and
// the fused decode product (native/gemv.cu, swiglu_gemv_*), so the two paths give the same bits.
#pragma once
#include "prelude.cuh"

__device__ __forceinline__ float swiglu_value(float g, float u, int dt)
{
    float silu = g / (1.0f + expf(-g));
    // PyTorch's eager act_fn(gate) * up rounds the activation to the dtype before the product.
    if (dt == DT_BF16) silu = bf16_to_f32(f32_to_bf16(silu));
    else if (dt == DT_F16) silu = f16_to_f32(f32_to_f16(silu));
    return silu * u;
}
