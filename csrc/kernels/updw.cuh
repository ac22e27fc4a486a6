// UpDWBlock, CUDA: one thread block per (tile of low-resolution pixels, image). Phase 1 computes
// the depthwise outputs of the tile's 4 x tile output pixels from the clamped 3x3 low-resolution
// neighbourhoods into shared memory (fp32; the upsampled map is never stored); phase 2 normalises
// each output pixel over channels; phase 3 is the 1x1 projection with bias and exact-erf GELU,
// written once. Weights arrive as contiguous fp32.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "common.h"
#include "cuda_types.cuh"

namespace edgerain {

constexpr int kUpdwThreads = 256;
constexpr size_t kUpdwSmemBudget = 48 * 1024;

struct UpdwLaunch {
  dim3 grid, block;
  int tile;  // low-resolution pixels per block
  size_t smem_bytes;
};

inline UpdwLaunch updw_launch_config(const UpdwShape& s) {
  const int64_t row = s.cin + 1;  // +1: odd stride, so consecutive output pixels hit distinct banks
  int64_t tile = int64_t(kUpdwSmemBudget / sizeof(float)) / (4 * row + 2 * 4);
  tile = tile < 1 ? 1 : (tile > 16 ? 16 : tile);
  const int64_t pixels = s.height * s.width;
  const size_t smem = sizeof(float) * size_t(4 * tile * row + 2 * 4 * tile);
  return {dim3(unsigned((pixels + tile - 1) / tile), unsigned(s.batch)), dim3(kUpdwThreads), int(tile), smem};
}

template <typename T>
__global__ void updw_forward_kernel(const T* __restrict__ x, Strides4 xs, const float* __restrict__ dw_w,
                                    const float* __restrict__ dw_b, const float* __restrict__ ln_w,
                                    const float* __restrict__ ln_b, const float* __restrict__ pw_w,
                                    const float* __restrict__ pw_b, T* __restrict__ y, Strides4 ys, UpdwShape s,
                                    int tile) {
  extern __shared__ float smem[];
  const int64_t row = s.cin + 1;
  const int outs = 4 * tile;  // output pixels of this block: index r = phase * tile + m
  float* feat = smem;         // [outs][row]
  float* mean_s = feat + outs * row;
  float* rstd_s = mean_s + outs;
  const int64_t b = blockIdx.y;
  const int64_t first = int64_t(blockIdx.x) * tile;
  const int64_t pixels = s.height * s.width;

  // Phase 1: depthwise 3x3 on the (virtual) upsampled map.
  for (int64_t idx = threadIdx.x; idx < int64_t(outs) * s.cin; idx += blockDim.x) {
    const int r = int(idx % outs);
    const int64_t c = idx / outs;
    const int64_t pix = first + r % tile;
    if (pix >= pixels) continue;
    const int phase = r / tile, pa = phase / 2, pb = phase % 2;
    const int64_t i = pix / s.width, j = pix % s.width;
    const int64_t rows[3] = {i > 0 ? i - 1 : 0, i, i + 1 < s.height ? i + 1 : i};
    const int64_t cols[3] = {j > 0 ? j - 1 : 0, j, j + 1 < s.width ? j + 1 : j};
    const T* xc = x + b * xs.b + c * xs.c;
    float nb[3][3];
#pragma unroll
    for (int u = 0; u < 3; ++u)
#pragma unroll
      for (int t = 0; t < 3; ++t) nb[u][t] = to_f32(xc[rows[u] * xs.y + cols[t] * xs.x]);
    float acc = dw_b[c];
#pragma unroll
    for (int ty = 0; ty < 3; ++ty) {
      const int ky = pa + ty - 1;
      if (!up_tap_inside(i, ky, s.height)) continue;
#pragma unroll
      for (int tx = 0; tx < 3; ++tx) {
        const int kx = pb + tx - 1;
        if (!up_tap_inside(j, kx, s.width)) continue;
        const float c0 = up_sample(nb[0][0], nb[0][1], nb[0][2], kx);
        const float c1 = up_sample(nb[1][0], nb[1][1], nb[1][2], kx);
        const float c2 = up_sample(nb[2][0], nb[2][1], nb[2][2], kx);
        acc += dw_w[c * 9 + ty * 3 + tx] * up_sample(c0, c1, c2, ky);
      }
    }
    feat[r * row + c] = acc;
  }
  __syncthreads();

  // Phase 2: LayerNorm statistics per output pixel (two-pass variance, fp32).
  for (int r = threadIdx.x; r < outs; r += blockDim.x) {
    if (first + r % tile >= pixels) continue;
    float m = 0.f;
    for (int64_t c = 0; c < s.cin; ++c) m += feat[r * row + c];
    m /= float(s.cin);
    float var = 0.f;
    for (int64_t c = 0; c < s.cin; ++c) {
      const float dlt = feat[r * row + c] - m;
      var += dlt * dlt;
    }
    mean_s[r] = m;
    rstd_s[r] = rsqrtf(var / float(s.cin) + kLnEps);
  }
  __syncthreads();
  for (int64_t idx = threadIdx.x; idx < int64_t(outs) * s.cin; idx += blockDim.x) {
    const int r = int(idx % outs);
    const int64_t c = idx / outs;
    if (first + r % tile >= pixels) continue;
    feat[r * row + c] = (feat[r * row + c] - mean_s[r]) * rstd_s[r] * ln_w[c] + ln_b[c];
  }
  __syncthreads();

  // Phase 3: 1x1 projection + bias + GELU, one (output pixel, output channel) per thread step.
  for (int64_t idx = threadIdx.x; idx < int64_t(outs) * s.cout; idx += blockDim.x) {
    const int r = int(idx % outs);
    const int64_t n = idx / outs;
    const int64_t pix = first + r % tile;
    if (pix >= pixels) continue;
    const int phase = r / tile;
    const float* wn = pw_w + n * s.cin;
    const float* fr = feat + r * row;
    float acc = pw_b[n];
    for (int64_t c = 0; c < s.cin; ++c) acc += wn[c] * fr[c];
    acc = 0.5f * acc * (1.f + erff(acc * 0.70710678118654752f));
    const int64_t oy = 2 * (pix / s.width) + phase / 2, ox = 2 * (pix % s.width) + phase % 2;
    y[b * ys.b + n * ys.c + oy * ys.y + ox * ys.x] = from_f32<T>(acc);
  }
}

}  // namespace edgerain
