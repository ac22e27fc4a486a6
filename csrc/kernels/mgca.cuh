// MGCA window attention, CUDA: one thread block per (window, batch * head), one thread per query
// pixel of the window. The window's keys, values and key biases are staged in shared memory once;
// logits and probabilities stay in shared memory (fp32), so nothing but the output goes back to
// global memory. Launch geometry and shared-memory size: mgca_launch_config().
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "common.h"
#include "cuda_types.cuh"

namespace edgerain {

struct MgcaLaunch {
  dim3 grid, block;
  size_t smem_bytes;
};

inline MgcaLaunch mgca_launch_config(const MgcaShape& s) {
  const int p = s.window * s.window;
  const int threads = ((p + 31) / 32) * 32;
  // K and V (p x d each), key bias (p), probabilities (p x p, key-major so a warp's threads,
  // which hold consecutive queries, hit consecutive banks).
  const size_t smem = sizeof(float) * (2 * size_t(p) * s.head_dim + p + size_t(p) * p);
  return {dim3(unsigned(s.windows_y() * s.windows_x()), unsigned(s.batch * s.heads)), dim3(threads), smem};
}

template <typename T>
__global__ void mgca_forward_kernel(const T* __restrict__ q, Strides5 qs, const T* __restrict__ k, Strides5 ks,
                                    const T* __restrict__ v, Strides5 vs, const T* __restrict__ mask, Strides4 ms,
                                    T* __restrict__ out, Strides5 os, MgcaShape s) {
  extern __shared__ float smem[];
  const int w = s.window, p = w * w;
  const int64_t d = s.head_dim;
  float* k_s = smem;          // [p][d]
  float* v_s = k_s + p * d;   // [p][d]
  float* bias_s = v_s + p * d;  // [p], -inf for pixels outside the image
  float* prob_s = bias_s + p;   // [key][query]

  const int64_t win = blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / s.heads, h = bh % s.heads;
  const int64_t wx_count = s.windows_x();
  const int64_t y0 = (win / wx_count) * w - s.shift, x0 = (win % wx_count) * w - s.shift;

  const int i = threadIdx.x;
  const int64_t y = y0 + i / w, x = x0 + i % w;
  const bool inside = i < p && y >= 0 && y < s.height && x >= 0 && x < s.width;
  float gate = 0.f;
  if (i < p) {
    if (inside) {
      gate = to_f32(mask[b * ms.b + y * ms.y + x * ms.x]);
      bias_s[i] = logf(1.f - gate + kMaskEps);
      for (int64_t c = 0; c < d; ++c) {
        k_s[i * d + c] = to_f32(k[b * ks.b + h * ks.h + c * ks.c + y * ks.y + x * ks.x]);
        v_s[i * d + c] = to_f32(v[b * vs.b + h * vs.h + c * vs.c + y * vs.y + x * vs.x]);
      }
    } else {
      bias_s[i] = -INFINITY;
      for (int64_t c = 0; c < d; ++c) k_s[i * d + c] = v_s[i * d + c] = 0.f;
    }
  }
  __syncthreads();
  if (!inside) return;

  const float scale = rsqrtf(float(d));
  for (int j = 0; j < p; ++j) prob_s[j * p + i] = 0.f;
  const T* qi = q + b * qs.b + h * qs.h + y * qs.y + x * qs.x;
  for (int64_t c = 0; c < d; ++c) {
    const float qc = to_f32(qi[c * qs.c]) * scale;
    for (int j = 0; j < p; ++j) prob_s[j * p + i] += qc * k_s[j * d + c];
  }
  float row_max = -INFINITY;
  for (int j = 0; j < p; ++j) {
    const float l = prob_s[j * p + i] + bias_s[j];
    prob_s[j * p + i] = l;
    row_max = fmaxf(row_max, l);
  }
  float denom = 0.f;
  for (int j = 0; j < p; ++j) {
    const float e = expf(prob_s[j * p + i] - row_max);  // exp(-inf) = 0 for keys outside
    prob_s[j * p + i] = e;
    denom += e;
  }
  const float g = gate / denom;
  T* oi = out + b * os.b + h * os.h + y * os.y + x * os.x;
  for (int64_t c = 0; c < d; ++c) {
    float acc = 0.f;
    for (int j = 0; j < p; ++j) acc += prob_s[j * p + i] * v_s[j * d + c];
    oi[c * os.c] = from_f32<T>(acc * g);
  }
}

}  // namespace edgerain
