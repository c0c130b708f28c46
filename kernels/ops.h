/* ops.h - the element-wise and row-wise operations of a Llama layer, with
 * ggml's numerics where they decide a result's last bits (RMSNorm sums in
 * double; RoPE angles by repeated multiplication in float).
 * Pure functions on caller memory; any thread. */
#pragma once
#include <stdint.h>

/* out = x / sqrt(mean(x^2) + eps) * w, n values. out may alias x. */
void op_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* Rotate adjacent pairs (x[2i], x[2i+1]) of each of n_head heads of head_dim
 * values by pos * base^(-2i/n_rot), for 2i < n_rot (llama.cpp's "normal"
 * RoPE, which the GGUF Q/K layout is written for). */
void op_rope(float *x, int n_head, int head_dim, int n_rot, int32_t pos, float freq_base);

/* gate[i] = silu(gate[i]) * up[i]. */
void op_swiglu(float *gate, const float *up, int n);

/* y[i] += x[i]. */
void op_add(float *y, const float *x, int n);

/* Index of the largest of x[0, n), the lowest one on ties; NaN counts as
 * -inf; 0 when nothing beats -inf. */
int32_t op_argmax(const float *x, int32_t n);
