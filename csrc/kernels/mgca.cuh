// MGCA window attention, CUDA: one thread block per (window, batch * head), one thread per query
// pixel of the window. The window's queries, keys, values and key biases are staged in shared memory once;
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
  // Q (pre-scaled), K, V (d x p each), key bias (p), probabilities (p x p).
  const size_t smem = sizeof(float) * (3 * size_t(p) * s.head_dim + p + size_t(p) * p);
  return {dim3(unsigned(s.windows_y() * s.windows_x()), unsigned(s.batch * s.heads)), dim3(threads), smem};
}

template <typename T>
__global__ void mgca_forward_kernel(const T* __restrict__ q, Strides5 qs, const T* __restrict__ k, Strides5 ks,
                                    const T* __restrict__ v, Strides5 vs, const T* __restrict__ mask, Strides4 ms,
                                    T* __restrict__ out, Strides5 os, MgcaShape s) {
  extern __shared__ float smem[];
  const int w = s.window, p = w * w;
  const int64_t d = s.head_dim;
  // Channel-major [d][p] and key-major [key][query]: a warp's threads (consecutive query pixels)
  // touch consecutive banks, and all of them read the same key (a broadcast) at a time.
  float* q_s = smem;            // [d][p], scaled by 1/sqrt(d)
  float* k_s = q_s + p * d;     // [d][p]
  float* v_s = k_s + p * d;     // [d][p]
  float* bias_s = v_s + p * d;  // [p], -inf for pixels outside the image
  float* prob_s = bias_s + p;   // [key][query]

  const int64_t win = blockIdx.x, bh = blockIdx.y;
  const int64_t b = bh / s.heads, h = bh % s.heads;
  const int64_t wx_count = s.windows_x();
  const int64_t y0 = (win / wx_count) * w - s.shift, x0 = (win % wx_count) * w - s.shift;

  const int i = threadIdx.x;
  const int64_t y = y0 + i / w, x = x0 + i % w;
  const bool inside = i < p && y >= 0 && y < s.height && x >= 0 && x < s.width;
  const float scale = rsqrtf(float(d));
  float gate = 0.f;
  if (i < p) {
    if (inside) {
      gate = to_f32(mask[b * ms.b + y * ms.y + x * ms.x]);
      bias_s[i] = logf(1.f - gate + kMaskEps);
      for (int64_t c = 0; c < d; ++c) {
        q_s[c * p + i] = to_f32(q[b * qs.b + h * qs.h + c * qs.c + y * qs.y + x * qs.x]) * scale;
        k_s[c * p + i] = to_f32(k[b * ks.b + h * ks.h + c * ks.c + y * ks.y + x * ks.x]);
        v_s[c * p + i] = to_f32(v[b * vs.b + h * vs.h + c * vs.c + y * vs.y + x * vs.x]);
      }
    } else {
      bias_s[i] = -INFINITY;
      for (int64_t c = 0; c < d; ++c) q_s[c * p + i] = k_s[c * p + i] = v_s[c * p + i] = 0.f;
    }
  }
  __syncthreads();
  if (!inside) return;

  float row_max = -INFINITY;
  for (int j = 0; j < p; ++j) {
    float l = bias_s[j];
    if (l != -INFINITY) {  // keys outside the image get weight 0: skip their dot products
      for (int64_t c = 0; c < d; ++c) l += q_s[c * p + i] * k_s[c * p + j];
      row_max = fmaxf(row_max, l);
    }
    prob_s[j * p + i] = l;
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
    for (int j = 0; j < p; ++j) acc += prob_s[j * p + i] * v_s[c * p + j];
    oi[c * os.c] = from_f32<T>(acc * g);
  }
}

}  // namespace edgerain
