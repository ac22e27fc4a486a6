// Shapes, strides and the small formulas the CPU and CUDA kernels share. No torch types here: the
// same headers serve the Python extension, a C++ runtime and TensorRT / ONNX Runtime plugins.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define EDGERAIN_HD __host__ __device__ __forceinline__
#else
#define EDGERAIN_HD inline
#endif

namespace edgerain {

constexpr float kMaskEps = 1e-4f;  // key bias log(1 - M + eps)
constexpr float kLnEps = 1e-6f;    // UpDWBlock LayerNorm

// Element strides of a (B, heads, d, H, W) tensor: q, k, v and the MGCA output.
struct Strides5 {
  int64_t b, h, c, y, x;
};

// Element strides of a (B, C, H, W) tensor.
struct Strides4 {
  int64_t b, c, y, x;
};

struct MgcaShape {
  int64_t batch, heads, head_dim, height, width;
  int window, shift;
  // Windows per axis: the grid is offset by `shift`, nothing wraps, border windows are partial.
  EDGERAIN_HD int64_t windows_y() const { return (height + shift + window - 1) / window; }
  EDGERAIN_HD int64_t windows_x() const { return (width + shift + window - 1) / window; }
};

struct UpdwShape {
  int64_t batch, cin, cout, height, width;  // low-resolution input size; the output is 2h x 2w
};

// Bilinear x2 (align_corners=False) sample at upsampled position 2*i + k (k in -1..2) along one
// axis, from the low-resolution samples i-1, i, i+1 (clamped by the caller: replicate padding).
template <typename T>
EDGERAIN_HD T up_sample(T prev, T cur, T next, int k) {
  switch (k) {
    case -1:
      return T(0.75) * prev + T(0.25) * cur;
    case 0:
      return T(0.25) * prev + T(0.75) * cur;
    case 1:
      return T(0.75) * cur + T(0.25) * next;
    default:
      return T(0.25) * cur + T(0.75) * next;
  }
}

// Whether the depthwise tap reading upsampled position 2*i + k lies inside the upsampled map of
// length 2*n: the convolution zero-pads that map, so the ring of output pixels loses one tap.
EDGERAIN_HD bool up_tap_inside(int64_t i, int k, int64_t n) { return !(k == -1 && i == 0) && !(k == 2 && i == n - 1); }

}  // namespace edgerain
