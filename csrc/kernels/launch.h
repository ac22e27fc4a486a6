// Host entry points of the CUDA kernels: raw device pointers, sizes, strides and a stream; no torch
// types, so a C++ runtime or a TensorRT / ONNX Runtime plugin can call them directly.
#pragma once

#include <cuda_runtime_api.h>

#include "common.h"

namespace edgerain {

enum class DType { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// q, k, v, out: (B, heads, d, H, W) with the given element strides; mask: (B, 1, H, W). All of `dtype`.
cudaError_t mgca_forward_cuda(DType dtype, const void* q, Strides5 qs, const void* k, Strides5 ks, const void* v,
                              Strides5 vs, const void* mask, Strides4 ms, void* out, Strides5 os, const MgcaShape& shape,
                              cudaStream_t stream);

// x, y of `dtype`; the weights contiguous fp32: dw_w (Cin, 9), dw_b, ln_w, ln_b (Cin), pw_w (Cout, Cin), pw_b (Cout).
cudaError_t updw_forward_cuda(DType dtype, const void* x, Strides4 xs, const float* dw_w, const float* dw_b,
                              const float* ln_w, const float* ln_b, const float* pw_w, const float* pw_b, void* y,
                              Strides4 ys, const UpdwShape& shape, cudaStream_t stream);

// Shared memory one launch would need, so callers can refuse an input before launching.
size_t mgca_smem_bytes(const MgcaShape& shape);
size_t updw_smem_bytes(const UpdwShape& shape);

}  // namespace edgerain
