// edgerain._C: torch bindings of the fused ops. CPU tensors run the plain C++ kernels
// (kernels/*_cpu.h; half types are computed in fp32), CUDA tensors the CUDA kernels
// (kernels/launch.h) on the current stream when the extension was built with nvcc.
#include <torch/extension.h>

#include <string>

#include "kernels/common.h"
#include "kernels/mgca_cpu.h"
#include "kernels/updw_cpu.h"

#ifdef EDGERAIN_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/launch.h"
#endif

#ifndef EDGERAIN_CUDA_ARCHS
#define EDGERAIN_CUDA_ARCHS ""
#endif

namespace {

using edgerain::MgcaShape;
using edgerain::Strides4;
using edgerain::Strides5;
using edgerain::UpdwShape;

Strides5 strides5(const torch::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.stride(4)}; }
Strides4 strides4(const torch::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

void check_same(const torch::Tensor& ref, const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), name, " is on ", t.device(), " but q/x is on ", ref.device());
}

#ifdef EDGERAIN_WITH_CUDA
edgerain::DType cuda_dtype(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32:
      return edgerain::DType::kFloat32;
    case torch::kFloat16:
      return edgerain::DType::kFloat16;
    case torch::kBFloat16:
      return edgerain::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "edgerain CUDA kernels take float32, float16 or bfloat16, got ", t.scalar_type());
  }
}
#endif

// `out` (optional): a preallocated contiguous result of q's shape and dtype, written in full (tests
// poison it first so that any element the kernel skips shows).
torch::Tensor result_buffer(const c10::optional<torch::Tensor>& out, const torch::Tensor& like, at::IntArrayRef sizes) {
  if (!out.has_value()) return torch::empty(sizes, like.options());
  const auto& o = *out;
  TORCH_CHECK(o.sizes() == sizes && o.scalar_type() == like.scalar_type() && o.device() == like.device() &&
                  o.is_contiguous(),
              "out must be a contiguous ", like.scalar_type(), " tensor of shape ", sizes, " on ", like.device());
  return o;
}

torch::Tensor mgca_forward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor mask, int64_t window,
                           int64_t shift, c10::optional<torch::Tensor> out_opt) {
  TORCH_CHECK(q.dim() == 5, "q must be (B, heads, d, H, W), got ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q, k, v shapes differ");
  TORCH_CHECK(mask.dim() == 4 && mask.size(0) == q.size(0) && mask.size(1) == 1 && mask.size(2) == q.size(3) &&
                  mask.size(3) == q.size(4),
              "mask must be (B, 1, H, W) matching q, got ", mask.sizes());
  TORCH_CHECK(window >= 1 && shift >= 0 && shift < window, "need 0 <= shift < window, got ", shift, ", ", window);
  check_same(q, k, "k");
  check_same(q, v, "v");
  check_same(q, mask, "mask");
  const MgcaShape s{q.size(0), q.size(1), q.size(2), q.size(3), q.size(4), int(window), int(shift)};
  if (q.is_cuda()) {
#ifdef EDGERAIN_WITH_CUDA
    TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), "q, k, v dtypes differ");
    const c10::cuda::CUDAGuard guard(q.device());
    auto m = mask.to(q.scalar_type());
    auto out = result_buffer(out_opt, q, q.sizes());
    if (out.numel() == 0) return out;
    const cudaError_t err = edgerain::mgca_forward_cuda(
        cuda_dtype(q), q.data_ptr(), strides5(q), k.data_ptr(), strides5(k), v.data_ptr(), strides5(v), m.data_ptr(),
        strides4(m), out.data_ptr(), strides5(out), s, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess, "edgerain mgca CUDA kernel failed: ", cudaGetErrorString(err));
    return out;
#else
    TORCH_CHECK(false, "edgerain._C was built without CUDA (nvcc was not found at build time)");
#endif
  }
  TORCH_CHECK(q.device().is_cpu(), "unsupported device ", q.device());
  const auto out_type = q.scalar_type();
  const auto compute = out_type == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto qc = q.to(compute), kc = k.to(compute), vc = v.to(compute), mc = mask.to(compute);
  auto result = result_buffer(out_opt, q, q.sizes());
  auto out = compute == out_type ? result : torch::empty(q.sizes(), qc.options());
  AT_DISPATCH_FLOATING_TYPES(compute, "mgca_forward_cpu", [&] {
    edgerain::mgca_forward_cpu<scalar_t>(qc.data_ptr<scalar_t>(), strides5(qc), kc.data_ptr<scalar_t>(),
                                         strides5(kc), vc.data_ptr<scalar_t>(), strides5(vc), mc.data_ptr<scalar_t>(),
                                         strides4(mc), out.data_ptr<scalar_t>(), strides5(out), s);
  });
  if (compute != out_type) result.copy_(out);
  return result;
}

torch::Tensor updw_forward(torch::Tensor x, torch::Tensor dw_w, torch::Tensor dw_b, torch::Tensor ln_w,
                           torch::Tensor ln_b, torch::Tensor pw_w, torch::Tensor pw_b,
                           c10::optional<torch::Tensor> out_opt) {
  TORCH_CHECK(x.dim() == 4, "x must be (B, Cin, h, w), got ", x.sizes());
  const int64_t cin = x.size(1);
  TORCH_CHECK(dw_w.numel() == cin * 9, "dw_weight must be (Cin, 1, 3, 3)");
  TORCH_CHECK(dw_b.numel() == cin && ln_w.numel() == cin && ln_b.numel() == cin, "dw_bias/ln_* must have Cin items");
  TORCH_CHECK(pw_w.dim() == 2 && pw_w.size(1) == cin, "pw_weight must be (Cout, Cin), got ", pw_w.sizes());
  const int64_t cout = pw_w.size(0);
  TORCH_CHECK(pw_b.numel() == cout, "pw_bias must have Cout items");
  for (const auto* t : {&dw_w, &dw_b, &ln_w, &ln_b, &pw_w, &pw_b}) check_same(x, *t, "a weight");
  const UpdwShape s{x.size(0), cin, cout, x.size(2), x.size(3)};
  if (x.is_cuda()) {
#ifdef EDGERAIN_WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32).contiguous(); };
    auto dww = f32(dw_w), dwb = f32(dw_b), lnw = f32(ln_w), lnb = f32(ln_b), pww = f32(pw_w), pwb = f32(pw_b);
    auto y = result_buffer(out_opt, x, {s.batch, cout, 2 * s.height, 2 * s.width});
    if (y.numel() == 0) return y;
    const cudaError_t err = edgerain::updw_forward_cuda(
        cuda_dtype(x), x.data_ptr(), strides4(x), dww.data_ptr<float>(), dwb.data_ptr<float>(), lnw.data_ptr<float>(),
        lnb.data_ptr<float>(), pww.data_ptr<float>(), pwb.data_ptr<float>(), y.data_ptr(), strides4(y), s,
        c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess, "edgerain updw CUDA kernel failed: ", cudaGetErrorString(err));
    return y;
#else
    TORCH_CHECK(false, "edgerain._C was built without CUDA (nvcc was not found at build time)");
#endif
  }
  TORCH_CHECK(x.device().is_cpu(), "unsupported device ", x.device());
  const auto out_type = x.scalar_type();
  const auto compute = out_type == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto c = [&](const torch::Tensor& t) { return t.to(compute).contiguous(); };
  auto xc = x.to(compute), dww = c(dw_w), dwb = c(dw_b), lnw = c(ln_w), lnb = c(ln_b), pww = c(pw_w), pwb = c(pw_b);
  auto result = result_buffer(out_opt, x, {s.batch, cout, 2 * s.height, 2 * s.width});
  auto y = compute == out_type ? result : torch::empty(result.sizes(), xc.options());
  AT_DISPATCH_FLOATING_TYPES(compute, "updw_forward_cpu", [&] {
    edgerain::updw_forward_cpu<scalar_t>(xc.data_ptr<scalar_t>(), strides4(xc), dww.data_ptr<scalar_t>(),
                                         dwb.data_ptr<scalar_t>(), lnw.data_ptr<scalar_t>(), lnb.data_ptr<scalar_t>(),
                                         pww.data_ptr<scalar_t>(), pwb.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                         strides4(y), s);
  });
  if (compute != out_type) result.copy_(y);
  return result;
}

bool cuda_compiled() {
#ifdef EDGERAIN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int64_t mgca_cuda_smem_bytes(int64_t window, int64_t head_dim) {
#ifdef EDGERAIN_WITH_CUDA
  return int64_t(edgerain::mgca_smem_bytes(MgcaShape{1, 1, head_dim, 1, 1, int(window), 0}));
#else
  return -1;
#endif
}

int64_t updw_cuda_smem_bytes(int64_t cin, int64_t cout) {
#ifdef EDGERAIN_WITH_CUDA
  return int64_t(edgerain::updw_smem_bytes(UpdwShape{1, cin, cout, 1, 1}));
#else
  return -1;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "edgerain fused ops: C++ (CPU) and CUDA kernels for MGCA window attention and the UpDWBlock";
  m.def("mgca_forward", &mgca_forward, "MGCA window attention forward", py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("mask"), py::arg("window"), py::arg("shift"), py::arg("out") = py::none());
  m.def("updw_forward", &updw_forward, "UpDWBlock forward", py::arg("x"), py::arg("dw_weight"), py::arg("dw_bias"),
        py::arg("ln_weight"), py::arg("ln_bias"), py::arg("pw_weight"), py::arg("pw_bias"),
        py::arg("out") = py::none());
  m.def("cuda_compiled", &cuda_compiled, "whether the CUDA kernels were compiled in");
  m.def("cuda_archs", [] { return std::string(EDGERAIN_CUDA_ARCHS); }, "CUDA architectures compiled in");
  m.def("mgca_cuda_smem_bytes", &mgca_cuda_smem_bytes, "shared memory one MGCA CUDA block needs (-1 without CUDA)");
  m.def("updw_cuda_smem_bytes", &updw_cuda_smem_bytes, "shared memory one UpDW CUDA block needs (-1 without CUDA)");
}
