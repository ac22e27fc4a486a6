// Running a bundle with ONNX Runtime, loaded at run time through OrtGetApiBase.
#define ORT_API_MANUAL_INIT
#include <dlfcn.h>
#include <onnxruntime/onnxruntime_cxx_api.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>

#include "edgerain/runtime.hpp"

#ifndef EDGERAIN_ORT_DEFAULT_LIB
#define EDGERAIN_ORT_DEFAULT_LIB ""
#endif

namespace edgerain {

namespace {

// The oldest C API version whose functions this file uses (ONNX Runtime 1.16, as on JetPack 6 builds).
constexpr int kMinApiVersion = 16;

struct OrtLibrary {
  void* handle = nullptr;
  const OrtApi* api = nullptr;
  std::string path;
  std::string version;
};

OrtLibrary& ort_library(const std::string& requested, bool verbose) {
  static OrtLibrary lib;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (lib.api != nullptr) return lib;
  std::vector<std::string> candidates;
  if (!requested.empty()) {
    candidates = {requested};
  } else {
    if (const char* env = std::getenv("EDGERAIN_ORT_LIB"); env != nullptr && *env != '\0') candidates.emplace_back(env);
    if (std::string(EDGERAIN_ORT_DEFAULT_LIB).size() > 0) candidates.emplace_back(EDGERAIN_ORT_DEFAULT_LIB);
    candidates.emplace_back("libonnxruntime.so");
    candidates.emplace_back("libonnxruntime.so.1");
  }
  std::string tried;
  for (const auto& c : candidates) {
    void* h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      tried += (tried.empty() ? "" : ", ") + c;
      continue;
    }
    using GetApiBase = const OrtApiBase* (*)();
    auto get_base = reinterpret_cast<GetApiBase>(::dlsym(h, "OrtGetApiBase"));
    if (get_base == nullptr) {
      ::dlclose(h);
      throw Error(c + " is not an ONNX Runtime library (no OrtGetApiBase)");
    }
    const OrtApiBase* base = get_base();
    const OrtApi* api = nullptr;
    for (int v = ORT_API_VERSION; v >= kMinApiVersion && api == nullptr; --v) api = base->GetApi(v);
    if (api == nullptr) {
      throw Error(c + " (ONNX Runtime " + base->GetVersionString() + ") is older than this runtime supports (1.16)");
    }
    lib = {h, api, c, base->GetVersionString()};
    Ort::InitApi(api);
    if (verbose) std::cerr << "edgerain: ONNX Runtime " << lib.version << " from " << c << "\n";
    return lib;
  }
  throw Error("cannot load ONNX Runtime (tried " + tried +
              "); point EDGERAIN_ORT_LIB or --ort-lib at libonnxruntime.so (e.g. the onnxruntime wheel's "
              "onnxruntime/capi/libonnxruntime.so.*)");
}

Ort::Env& ort_env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "edgerain");
  return env;
}

struct Graph {
  std::unique_ptr<Ort::Session> session;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
};

// A context output kept as ONNX Runtime returned it: data and shape.
struct ContextValue {
  std::vector<float> data;
  std::vector<int64_t> shape;
};

}  // namespace

struct Derainer::Impl {
  std::optional<Graph> context;
  std::vector<Graph> mains;
  std::vector<std::string> providers;
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);

  Graph open(const std::string& path, const Ort::SessionOptions& options) {
    Graph g;
    try {
      g.session = std::make_unique<Ort::Session>(ort_env(), path.c_str(), options);
    } catch (const Ort::Exception& e) {
      std::string msg = e.what();
      throw Error("onnxruntime cannot load " + path + ": " + msg.substr(0, msg.find('\n')));
    }
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < g.session->GetInputCount(); ++i) {
      g.inputs.emplace_back(g.session->GetInputNameAllocated(i, alloc).get());
    }
    for (size_t i = 0; i < g.session->GetOutputCount(); ++i) {
      g.outputs.emplace_back(g.session->GetOutputNameAllocated(i, alloc).get());
    }
    return g;
  }

  std::vector<Ort::Value> run(Graph& g, std::vector<Ort::Value>& feeds) {
    std::vector<const char*> in_names, out_names;
    for (size_t i = 0; i < feeds.size(); ++i) in_names.push_back(g.inputs[i].c_str());
    out_names.push_back(g.outputs[0].c_str());
    try {
      return g.session->Run(Ort::RunOptions{nullptr}, in_names.data(), feeds.data(), feeds.size(), out_names.data(), 1);
    } catch (const Ort::Exception& e) {
      std::string msg = e.what();
      throw Error("inference failed: " + msg.substr(0, msg.find('\n')));
    }
  }

  Ort::Value image_tensor(const Image& x) {
    const std::array<int64_t, 4> shape = {1, 3, x.height, x.width};
    return Ort::Value::CreateTensor<float>(memory, const_cast<float*>(x.data.data()), x.data.size(), shape.data(), 4);
  }

  ContextValue run_context(const Image& x) {
    std::vector<Ort::Value> feeds;
    feeds.push_back(image_tensor(x));
    auto out = run(*context, feeds);
    auto info = out[0].GetTensorTypeAndShapeInfo();
    const float* p = out[0].GetTensorData<float>();
    return {std::vector<float>(p, p + info.GetElementCount()), info.GetShape()};
  }

  Image run_main(size_t index, const Image& x, const ContextValue* ctx) {
    Graph& g = mains[index];
    std::vector<Ort::Value> feeds;
    feeds.push_back(image_tensor(x));
    if (g.inputs.size() > 1) {
      if (ctx == nullptr) throw Error("main graph " + std::to_string(index) + " needs a context input the bundle lacks");
      feeds.push_back(Ort::Value::CreateTensor<float>(memory, const_cast<float*>(ctx->data.data()), ctx->data.size(),
                                                      ctx->shape.data(), ctx->shape.size()));
    }
    auto out = run(g, feeds);
    auto shape = out[0].GetTensorTypeAndShapeInfo().GetShape();
    if (shape.size() != 4 || shape[1] != 3 || shape[2] != x.height || shape[3] != x.width) {
      throw Error("main graph " + std::to_string(index) + " returned an unexpected shape");
    }
    Image y(x.width, x.height);
    const float* p = out[0].GetTensorData<float>();
    std::copy(p, p + y.data.size(), y.data.begin());
    return y;
  }
};

Derainer::Derainer(const std::string& bundle, const Options& options) {
  spec_ = load_bundle(bundle, options.verify_hashes);
  tile_ = options.tile.value_or(spec_.tile);
  overlap_ = options.overlap.value_or(spec_.overlap);
  tta_views_ = tta_view_count(options.tta);
  if (tile_ > 0 && 2 * overlap_ >= tile_) {
    throw Error("tiling overlap " + std::to_string(overlap_) + " must be less than half the tile size " +
                std::to_string(tile_));
  }
  const OrtLibrary& lib = ort_library(options.ort_library, options.verbose);
  impl_ = std::make_unique<Impl>();  // after the library is loaded: Impl holds ONNX Runtime objects
  const OrtApi& api = *lib.api;
  Ort::SessionOptions so;
  if (options.threads > 0) so.SetIntraOpNumThreads(options.threads);
  std::vector<std::string> available;
  try {
    available = Ort::GetAvailableProviders();
  } catch (const Ort::Exception&) {
  }
  auto has = [&](const std::string& p) { return std::find(available.begin(), available.end(), p) != available.end(); };
  for (const auto& p : spec_.providers) {
    if (p == "CPUExecutionProvider") continue;
    if (!has(p)) {
      std::cerr << "edgerain: execution provider " << p << " is not available in ONNX Runtime " << lib.version
                << "; falling back\n";
      continue;
    }
    try {
      if (p == "TensorrtExecutionProvider") {
        OrtTensorRTProviderOptionsV2* trt = nullptr;
        Ort::ThrowOnError(api.CreateTensorRTProviderOptions(&trt));
        so.AppendExecutionProvider_TensorRT_V2(*trt);
        api.ReleaseTensorRTProviderOptions(trt);
      } else if (p == "CUDAExecutionProvider") {
        OrtCUDAProviderOptionsV2* cuda = nullptr;
        Ort::ThrowOnError(api.CreateCUDAProviderOptions(&cuda));
        so.AppendExecutionProvider_CUDA_V2(*cuda);
        api.ReleaseCUDAProviderOptions(cuda);
      } else {
        std::cerr << "edgerain: execution provider " << p << " is not supported by this runtime; falling back\n";
        continue;
      }
      impl_->providers.push_back(p);
    } catch (const Ort::Exception& e) {
      std::cerr << "edgerain: execution provider " << p << " could not be initialised (" << e.what()
                << "); falling back\n";
    }
  }
  impl_->providers.emplace_back("CPUExecutionProvider");
  if (options.verbose) {
    std::cerr << "edgerain: providers";
    for (const auto& p : impl_->providers) std::cerr << " " << p;
    std::cerr << "\n";
  }
  if (spec_.context_file) impl_->context = impl_->open(*spec_.context_file, so);
  for (const auto& f : spec_.main_files) impl_->mains.push_back(impl_->open(f, so));
}

Derainer::~Derainer() = default;

std::vector<std::string> Derainer::providers() const { return impl_->providers; }

namespace {

using PaddedFn = std::function<Image(const Image&)>;

// Pad, run, crop back and clamp to [0, 1] (one tile or the whole image).
Image run_padded(const PaddedFn& fn, const Image& x, int multiple) {
  Image y = fn(pad_reflect_else_replicate(x, multiple));
  Image out = crop(y, 0, 0, x.width, x.height);
  for (float& v : out.data) v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  return out;
}

Image run_tiled(const PaddedFn& fn, const Image& x, int multiple, int tile, int overlap) {
  const int H = x.height, W = x.width;
  if (tile <= 0 || (H <= tile && W <= tile)) return run_padded(fn, x, multiple);
  Image out(W, H);
  std::vector<float> weight(static_cast<size_t>(H) * W, 0.0f);
  const int th = std::min(tile, H), tw = std::min(tile, W);
  for (int y0 : tile_starts(H, tile, overlap)) {
    const auto wy = blend_ramp(th, overlap, y0 == 0, y0 + th >= H);
    for (int x0 : tile_starts(W, tile, overlap)) {
      const auto wx = blend_ramp(tw, overlap, x0 == 0, x0 + tw >= W);
      const Image piece = run_padded(fn, crop(x, x0, y0, tw, th), multiple);
      for (int y = 0; y < th; ++y) {
        for (int xx = 0; xx < tw; ++xx) {
          const float w2 = wy[y] * wx[xx];
          const size_t dst = static_cast<size_t>(y0 + y) * W + x0 + xx;
          const size_t src = static_cast<size_t>(y) * tw + xx;
          for (int c = 0; c < 3; ++c) out.plane(c)[dst] += piece.plane(c)[src] * w2;
          weight[dst] += w2;
        }
      }
    }
  }
  for (int c = 0; c < 3; ++c) {
    float* p = out.plane(c);
    for (size_t i = 0; i < weight.size(); ++i) p[i] /= weight[i];
  }
  return out;
}

}  // namespace

Image Derainer::run(const Image& input) {
  Impl& impl = *impl_;
  last_scores_.clear();
  if (std::min(input.width, input.height) < spec_.min_side) {
    // The context graph would still run (ONNX pooling pads), on an image the network was not built for.
    throw Error(spec_.model_name + " needs images of at least " + std::to_string(spec_.min_side) + "x" +
                std::to_string(spec_.min_side) + " pixels; got " + std::to_string(input.width) + "x" +
                std::to_string(input.height));
  }
  std::optional<ContextValue> ctx;
  if (impl.context) ctx = impl.run_context(input);
  const int multiple = spec_.pad_multiple;
  // One view through the network: the main graph(s) chosen by the context, tiled and blended.
  std::function<Image(const Image&)> one;
  if (spec_.context_kind != "router") {
    const ContextValue* c = ctx ? &*ctx : nullptr;
    one = [&, c](const Image& view) {
      return run_tiled([&](const Image& t) { return impl.run_main(0, t, c); }, view, multiple, tile_, overlap_);
    };
  } else {
    last_scores_ = ctx->data;
    if (last_scores_.size() != impl.mains.size()) {
      throw Error("the router scores " + std::to_string(last_scores_.size()) + " experts but the bundle has " +
                  std::to_string(impl.mains.size()));
    }
    if (spec_.routing_rule == "hard-top1") {
      const size_t best = static_cast<size_t>(
          std::distance(last_scores_.begin(), std::max_element(last_scores_.begin(), last_scores_.end())));
      one = [&, best](const Image& view) {
        return run_tiled([&](const Image& t) { return impl.run_main(best, t, nullptr); }, view, multiple, tile_,
                         overlap_);
      };
    } else {
      auto mixed = [&](const Image& t) {
        Image out(t.width, t.height);
        for (size_t e = 0; e < impl.mains.size(); ++e) {
          const Image y = impl.run_main(e, t, nullptr);
          for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += last_scores_[e] * y.data[i];
        }
        return out;
      };
      one = [&, mixed](const Image& view) { return run_tiled(mixed, view, multiple, tile_, overlap_); };
    }
  }
  // Self-ensemble (edgerain/tta.py): the mirrored views share the routing decided above on the
  // unflipped image; outputs are summed in the Python order and divided once.
  static constexpr bool kMirror[4][2] = {{false, false}, {true, false}, {false, true}, {true, true}};
  Image total = one(input);
  for (int v = 1; v < tta_views_; ++v) {
    const bool lr = kMirror[v][0], tb = kMirror[v][1];
    const Image y = flip(one(flip(input, lr, tb)), lr, tb);
    for (size_t i = 0; i < total.data.size(); ++i) total.data[i] += y.data[i];
  }
  if (tta_views_ > 1) {
    for (float& v : total.data) v /= static_cast<float>(tta_views_);
  }
  return total;
}

}  // namespace edgerain
