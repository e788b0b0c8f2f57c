// Elementwise ops over strided, broadcast operands: casts/copies, fill, unary and binary maps, where.
// Layout operand 0 is the output; inputs follow. Float32 arithmetic for f32/bf16/f16, float64 for f64,
// 64-bit integers for integer types.
#include "prelude.cuh"
#include "swiglu.cuh" // swiglu_value

// UnaryOp (Parrot.Tensors.UnaryOp order).
#define U_NEG 0
#define U_ABS 1
#define U_EXP 2
#define U_LOG 3
#define U_SQRT 4
#define U_RSQRT 5
#define U_TANH 6
#define U_SIGMOID 7
#define U_SILU 8
#define U_GELU_ERF 9
#define U_GELU_TANH 10
#define U_QUICK_GELU 11
#define U_RELU 12
#define U_SIN 13
#define U_COS 14
#define U_SQUARE 15
#define U_RECIPROCAL 16
#define U_ERF 17

// BinaryOp order.
#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_POW 4
#define B_MAX 5
#define B_MIN 6
#define B_EQ 7
#define B_NE 8
#define B_LT 9
#define B_LE 10
#define B_GT 11
#define B_GE 12

__device__ __forceinline__ float unary_f(int op, float x)
{
    switch (op)
    {
        case U_NEG: return -x;
        case U_ABS: return fabsf(x);
        case U_EXP: return expf(x);
        case U_LOG: return logf(x);
        case U_SQRT: return sqrtf(x);
        case U_RSQRT: return 1.0f / sqrtf(x);
        case U_TANH: return tanhf(x);
        case U_SIGMOID: return 1.0f / (1.0f + expf(-x));
        case U_SILU: return x / (1.0f + expf(-x));
        case U_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case U_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case U_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
        case U_RELU: return x > 0.0f ? x : (x != x ? x : 0.0f);
        case U_SIN: return sinf(x);
        case U_COS: return cosf(x);
        case U_SQUARE: return x * x;
        case U_RECIPROCAL: return 1.0f / x;
        default: return erff(x);
    }
}

__device__ __forceinline__ double unary_d(int op, double x)
{
    switch (op)
    {
        case U_NEG: return -x;
        case U_ABS: return fabs(x);
        case U_EXP: return exp(x);
        case U_LOG: return log(x);
        case U_SQRT: return sqrt(x);
        case U_RSQRT: return 1.0 / sqrt(x);
        case U_TANH: return tanh(x);
        case U_SIGMOID: return 1.0 / (1.0 + exp(-x));
        case U_SILU: return x / (1.0 + exp(-x));
        case U_GELU_ERF: return 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
        case U_GELU_TANH: return 0.5 * x * (1.0 + tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
        case U_QUICK_GELU: return x / (1.0 + exp(-1.702 * x));
        case U_RELU: return x > 0.0 ? x : (x != x ? x : 0.0);
        case U_SIN: return sin(x);
        case U_COS: return cos(x);
        case U_SQUARE: return x * x;
        case U_RECIPROCAL: return 1.0 / x;
        default: return erf(x);
    }
}

__device__ __forceinline__ i64 unary_i(int op, i64 x)
{
    switch (op)
    {
        case U_NEG: return -x;
        case U_ABS: return x < 0 ? -x : x;
        case U_SQUARE: return x * x;
        default: return x > 0 ? x : 0; // U_RELU; the host refuses other ops on integers
    }
}

template <typename T>
__device__ __forceinline__ T binary_arith(int op, T a, T b)
{
    switch (op)
    {
        case B_ADD: return a + b;
        case B_SUB: return a - b;
        case B_MUL: return a * b;
        case B_DIV: return a / b;
        case B_MAX: return (a != a || a > b) ? a : b;
        default: return (a != a || a < b) ? a : b; // B_MIN
    }
}

template <typename T>
__device__ __forceinline__ bool compare(int op, T a, T b)
{
    switch (op)
    {
        case B_EQ: return a == b;
        case B_NE: return a != b;
        case B_LT: return a < b;
        case B_LE: return a <= b;
        case B_GT: return a > b;
        default: return a >= b;
    }
}

__device__ __forceinline__ i64 ipow(i64 x, i64 e)
{
    if (e < 0) return x == 1 ? 1 : (x == -1 ? ((e & 1) ? -1 : 1) : 0);
    i64 r = 1;
    while (e > 0) { if (e & 1) r *= x; x *= x; e >>= 1; }
    return r;
}

// y = cast(x); same element type copies bits, integer to integer goes through i64, anything else through double.
extern "C" __global__ void copy_cast(Layout L, i64 n, void* y, int ydt, const void* x, int xdt)
{
    bool intish_x = xdt >= DT_I32, intish_y = ydt >= DT_I32;
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 2, o);
        if (xdt == ydt) copy_bits(y, o[0], x, o[1], elem_size(xdt));
        else if (intish_x && intish_y) store<i64>(y, ydt, o[0], load<i64>(x, xdt, o[1]));
        else if (ydt == DT_F32 || ydt == DT_BF16 || ydt == DT_F16) store<float>(y, ydt, o[0], (float)load<double>(x, xdt, o[1]));
        else store<double>(y, ydt, o[0], load<double>(x, xdt, o[1]));
    }
}

// Contiguous fast path of copy_cast between float32 and bfloat16 (the training casts).
extern "C" __global__ void cast_f32_bf16(i64 n, u16* y, const float* x)
{
    GRID_STRIDE_LOOP(i, n) y[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void cast_bf16_f32(i64 n, float* y, const u16* x)
{
    GRID_STRIDE_LOOP(i, n) y[i] = bf16_to_f32(x[i]);
}

extern "C" __global__ void fill(Layout L, i64 n, void* y, int ydt, double value, i64 ivalue)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 1, o);
        if (ydt >= DT_I32) store<i64>(y, ydt, o[0], ivalue);
        else store<double>(y, ydt, o[0], value);
    }
}

// y = op(x). As the CPU backend: y's dtype picks the arithmetic (f64 → double, f32/bf16/f16 → float, integers →
// i64) and x, of any dtype xdt, is converted to it first; so exp of an int32 tensor into f32 is expf((float)x).
extern "C" __global__ void unary(Layout L, i64 n, int op, void* y, int ydt, const void* x, int xdt)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 2, o);
        if (ydt == DT_F64) store<double>(y, ydt, o[0], unary_d(op, load<double>(x, xdt, o[1])));
        else if (ydt >= DT_I32) store<i64>(y, ydt, o[0], unary_i(op, load<i64>(x, xdt, o[1])));
        else store<float>(y, ydt, o[0], unary_f(op, load<float>(x, xdt, o[1])));
    }
}

// y = a op b; dt is the inputs' type, ydt the output's (Bool for comparisons).
extern "C" __global__ void binary(Layout L, i64 n, int op, void* y, int ydt, const void* a, const void* b, int dt)
{
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 3, o);
        if (dt == DT_F64)
        {
            double p = load<double>(a, dt, o[1]), q = load<double>(b, dt, o[2]);
            if (op >= B_EQ) store<i64>(y, ydt, o[0], compare(op, p, q) ? 1 : 0);
            else store<double>(y, ydt, o[0], op == B_POW ? pow(p, q) : binary_arith(op, p, q));
        }
        else if (dt >= DT_I32)
        {
            i64 p = load<i64>(a, dt, o[1]), q = load<i64>(b, dt, o[2]);
            if (op >= B_EQ) store<i64>(y, ydt, o[0], compare(op, p, q) ? 1 : 0);
            else if (op == B_DIV) store<i64>(y, ydt, o[0], q == 0 ? 0 : p / q);
            else store<i64>(y, ydt, o[0], op == B_POW ? ipow(p, q) : binary_arith(op, p, q));
        }
        else
        {
            float p = load<float>(a, dt, o[1]), q = load<float>(b, dt, o[2]);
            if (op >= B_EQ) store<i64>(y, ydt, o[0], compare(op, p, q) ? 1 : 0);
            else store<float>(y, ydt, o[0], op == B_POW ? powf(p, q) : binary_arith(op, p, q));
        }
    }
}

// y = cond ? a : b, element bits copied (every dtype).
extern "C" __global__ void where_select(Layout L, i64 n, void* y, const unsigned char* cond, const void* a, const void* b, int dt)
{
    int size = elem_size(dt);
    GRID_STRIDE_LOOP(i, n)
    {
        i64 o[MAX_OPERANDS];
        offsets(L, i, 4, o);
        if (cond[o[1]]) copy_bits(y, o[0], a, o[2], size);
        else copy_bits(y, o[0], b, o[3], size);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Packed forms for contiguous, 16-byte aligned operands of one float dtype (f32 or bf16): each thread moves 16 bytes
// (8 bf16 or 4 f32 elements) per load. With 2-byte loads too few bytes are in flight per SM to keep HBM busy (a
// bf16 SwiGLU ran at about a third of the copy bandwidth). Same arithmetic, element by element, as the scalar kernels
// (results are identical). `packs` = n / pack length; the elements past the last whole pack are done one by one.
struct alignas(16) Pack16
{
    unsigned w[4];
};

__device__ __forceinline__ int pack_len(int dt) { return dt == DT_BF16 ? 8 : 4; }

__device__ __forceinline__ void unpack16(const Pack16& p, int dt, float* f)
{
    if (dt == DT_BF16)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) { f[2 * i] = bf16_to_f32((u16)(p.w[i] & 0xffffu)); f[2 * i + 1] = bf16_to_f32((u16)(p.w[i] >> 16)); }
    }
    else
    {
#pragma unroll
        for (int i = 0; i < 4; i++) { f[i] = __uint_as_float(p.w[i]); f[i + 4] = 0.0f; } // lanes 4..7 unused for f32
    }
}

__device__ __forceinline__ Pack16 pack16(const float* f, int dt)
{
    Pack16 p;
    if (dt == DT_BF16)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) p.w[i] = (unsigned)f32_to_bf16(f[2 * i]) | ((unsigned)f32_to_bf16(f[2 * i + 1]) << 16);
    }
    else
    {
#pragma unroll
        for (int i = 0; i < 4; i++) p.w[i] = __float_as_uint(f[i]);
    }
    return p;
}

// The first element past the whole packs, and the stride, for the one-by-one tail.
#define PACKED_TAIL_LOOP(i, packs, n, dt) \
    for (i64 i = (packs) * pack_len(dt) + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

extern "C" __global__ void unary_packed(i64 packs, i64 n, int op, void* y, const void* x, int dt)
{
    GRID_STRIDE_LOOP(i, packs)
    {
        float f[8];
        unpack16(((const Pack16*)x)[i], dt, f);
#pragma unroll
        for (int e = 0; e < 8; e++) f[e] = unary_f(op, f[e]);
        ((Pack16*)y)[i] = pack16(f, dt);
    }
    PACKED_TAIL_LOOP(i, packs, n, dt) store<float>(y, dt, i, unary_f(op, load<float>(x, dt, i)));
}

// Arithmetic ops only (not comparisons, whose output is bool).
extern "C" __global__ void binary_packed(i64 packs, i64 n, int op, void* y, const void* a, const void* b, int dt)
{
    GRID_STRIDE_LOOP(i, packs)
    {
        float fa[8], fb[8];
        unpack16(((const Pack16*)a)[i], dt, fa);
        unpack16(((const Pack16*)b)[i], dt, fb);
#pragma unroll
        for (int e = 0; e < 8; e++) fa[e] = op == B_POW ? powf(fa[e], fb[e]) : binary_arith(op, fa[e], fb[e]);
        ((Pack16*)y)[i] = pack16(fa, dt);
    }
    PACKED_TAIL_LOOP(i, packs, n, dt)
    {
        float p = load<float>(a, dt, i), q = load<float>(b, dt, i);
        store<float>(y, dt, i, op == B_POW ? powf(p, q) : binary_arith(op, p, q));
    }
}

extern "C" __global__ void swiglu_forward_packed(i64 packs, i64 n, void* y, const void* gate, const void* up, int dt)
{
    GRID_STRIDE_LOOP(i, packs)
    {
        float g[8], u[8];
        unpack16(((const Pack16*)gate)[i], dt, g);
        unpack16(((const Pack16*)up)[i], dt, u);
#pragma unroll
        for (int e = 0; e < 8; e++) g[e] = swiglu_value(g[e], u[e], dt);
        ((Pack16*)y)[i] = pack16(g, dt);
    }
    PACKED_TAIL_LOOP(i, packs, n, dt) store<float>(y, dt, i, swiglu_value(load<float>(gate, dt, i), load<float>(up, dt, i), dt));
}

// dgate and dup of y = silu(gate)·up for an output gradient dy; one element.
__device__ __forceinline__ void swiglu_grads(float g, float u, float d, float& dg, float& du)
{
    float s = 1.0f / (1.0f + expf(-g));
    du = d * g * s;
    dg = d * u * s * (1.0f + g * (1.0f - s));
}

extern "C" __global__ void swiglu_backward_packed(i64 packs, i64 n, void* dgate, void* dup, const void* dy, const void* gate, const void* up, int dt)
{
    GRID_STRIDE_LOOP(i, packs)
    {
        float g[8], u[8], d[8], dg[8], du[8];
        unpack16(((const Pack16*)gate)[i], dt, g);
        unpack16(((const Pack16*)up)[i], dt, u);
        unpack16(((const Pack16*)dy)[i], dt, d);
#pragma unroll
        for (int e = 0; e < 8; e++) swiglu_grads(g[e], u[e], d[e], dg[e], du[e]);
        ((Pack16*)dgate)[i] = pack16(dg, dt);
        ((Pack16*)dup)[i] = pack16(du, dt);
    }
    PACKED_TAIL_LOOP(i, packs, n, dt)
    {
        float dg, du;
        swiglu_grads(load<float>(gate, dt, i), load<float>(up, dt, i), load<float>(dy, dt, i), dg, du);
        store<float>(dup, dt, i, du);
        store<float>(dgate, dt, i, dg);
    }
}

// SwiGLU: y = silu(gate) * up, and its backward dgate, dup from dy (all contiguous, one dtype); the scalar forms of
// swiglu_*_packed (any alignment).
extern "C" __global__ void swiglu_forward(i64 n, void* y, const void* gate, const void* up, int dt)
{
    GRID_STRIDE_LOOP(i, n) store<float>(y, dt, i, swiglu_value(load<float>(gate, dt, i), load<float>(up, dt, i), dt));
}

extern "C" __global__ void swiglu_backward(i64 n, void* dgate, void* dup, const void* dy, const void* gate, const void* up, int dt)
{
    GRID_STRIDE_LOOP(i, n)
    {
        float dg, du;
        swiglu_grads(load<float>(gate, dt, i), load<float>(up, dt, i), load<float>(dy, dt, i), dg, du);
        store<float>(dup, dt, i, du);
        store<float>(dgate, dt, i, dg);
    }
}
