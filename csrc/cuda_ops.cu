// The CUDA kernels' host entry points (declared in kernels/launch.h). Compiled by nvcc without any
// torch header, which keeps the extension's CUDA compile short.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/launch.h"
#include "kernels/mgca.cuh"
#include "kernels/updw.cuh"

namespace edgerain {

namespace {

template <typename T>
cudaError_t launch_mgca(const void* q, Strides5 qs, const void* k, Strides5 ks, const void* v, Strides5 vs,
                        const void* mask, Strides4 ms, void* out, Strides5 os, const MgcaShape& s,
                        cudaStream_t stream) {
  const MgcaLaunch cfg = mgca_launch_config(s);
  if (cfg.smem_bytes > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(mgca_forward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 int(cfg.smem_bytes));
    if (err != cudaSuccess) return err;
  }
  mgca_forward_kernel<T><<<cfg.grid, cfg.block, cfg.smem_bytes, stream>>>(
      static_cast<const T*>(q), qs, static_cast<const T*>(k), ks, static_cast<const T*>(v), vs,
      static_cast<const T*>(mask), ms, static_cast<T*>(out), os, s);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_updw(const void* x, Strides4 xs, const float* dw_w, const float* dw_b, const float* ln_w,
                        const float* ln_b, const float* pw_w, const float* pw_b, void* y, Strides4 ys,
                        const UpdwShape& s, cudaStream_t stream) {
  const UpdwLaunch cfg = updw_launch_config(s);
  if (cfg.smem_bytes > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(updw_forward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 int(cfg.smem_bytes));
    if (err != cudaSuccess) return err;
  }
  updw_forward_kernel<T><<<cfg.grid, cfg.block, cfg.smem_bytes, stream>>>(
      static_cast<const T*>(x), xs, dw_w, dw_b, ln_w, ln_b, pw_w, pw_b, static_cast<T*>(y), ys, s, cfg.tile);
  return cudaGetLastError();
}

}  // namespace

cudaError_t mgca_forward_cuda(DType dtype, const void* q, Strides5 qs, const void* k, Strides5 ks, const void* v,
                              Strides5 vs, const void* mask, Strides4 ms, void* out, Strides5 os, const MgcaShape& shape,
                              cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return launch_mgca<float>(q, qs, k, ks, v, vs, mask, ms, out, os, shape, stream);
    case DType::kFloat16:
      return launch_mgca<__half>(q, qs, k, ks, v, vs, mask, ms, out, os, shape, stream);
    case DType::kBFloat16:
      return launch_mgca<__nv_bfloat16>(q, qs, k, ks, v, vs, mask, ms, out, os, shape, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t updw_forward_cuda(DType dtype, const void* x, Strides4 xs, const float* dw_w, const float* dw_b,
                              const float* ln_w, const float* ln_b, const float* pw_w, const float* pw_b, void* y,
                              Strides4 ys, const UpdwShape& shape, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return launch_updw<float>(x, xs, dw_w, dw_b, ln_w, ln_b, pw_w, pw_b, y, ys, shape, stream);
    case DType::kFloat16:
      return launch_updw<__half>(x, xs, dw_w, dw_b, ln_w, ln_b, pw_w, pw_b, y, ys, shape, stream);
    case DType::kBFloat16:
      return launch_updw<__nv_bfloat16>(x, xs, dw_w, dw_b, ln_w, ln_b, pw_w, pw_b, y, ys, shape, stream);
  }
  return cudaErrorInvalidValue;
}

size_t mgca_smem_bytes(const MgcaShape& shape) { return mgca_launch_config(shape).smem_bytes; }
size_t updw_smem_bytes(const UpdwShape& shape) { return updw_launch_config(shape).smem_bytes; }

}  // namespace edgerain
