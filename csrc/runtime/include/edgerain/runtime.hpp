// edgerain C++ runtime: runs an edgerain bundle (docs/bundle-format.md) with ONNX Runtime.
//
// ONNX Runtime is loaded at run time (dlopen), so one binary works with the CPU library of the
// onnxruntime wheel and with a CUDA/TensorRT-enabled build on a Jetson.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgerain {

// An error the user caused (bad bundle, bad image, bad option): printed as one line, exit code 2.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A planar float image, batch 1: data[c * h * w + y * w + x], RGB in [0, 1].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<float> data;
  Image() = default;
  Image(int w, int h) : width(w), height(h), data(static_cast<size_t>(3) * w * h, 0.0f) {}
  float* plane(int c) { return data.data() + static_cast<size_t>(c) * width * height; }
  const float* plane(int c) const { return data.data() + static_cast<size_t>(c) * width * height; }
};

// ---- images (stb) -----------------------------------------------------------------------------
// Decode 8-bit RGB or grayscale (alpha and 16-bit images are refused, as in the Python runtime).
Image read_image(const std::string& path);
// Encode 8-bit PNG, rounding half up; written to a temporary file and renamed into place.
void write_png(const std::string& path, const Image& image);
uint8_t to_u8(float v);

// ---- the processing convention ----------------------------------------------------------------
Image pad_reflect_else_replicate(const Image& x, int multiple);
Image crop(const Image& x, int x0, int y0, int w, int h);
std::vector<int> tile_starts(int size, int tile, int overlap);
std::vector<float> blend_ramp(int n, int overlap, bool at_start, bool at_end);
// The image mirrored left-right and/or top-bottom.
Image flip(const Image& x, bool left_right, bool top_bottom);
// Views of a self-ensemble mode (edgerain/tta.py): "none" 1, "x2" 2, "x4" 4; Error otherwise.
int tta_view_count(const std::string& mode);

// ---- the bundle -------------------------------------------------------------------------------
struct BundleSpec {
  std::string root;
  std::string model_name;
  int pad_multiple = 8;
  int min_side = 1;  // the smallest image side the context graph accepts (manifest input.min_side)
  std::optional<std::string> context_file;  // absolute path
  std::string context_kind;                 // "router" | "prior" | ""
  std::string routing_rule;                 // "hard-top1" | "soft" | ""
  std::vector<std::string> main_files;      // absolute paths
  int tile = 0;                             // 0: whole image
  int overlap = 32;
  std::vector<std::string> providers;
};
BundleSpec load_bundle(const std::string& root, bool verify_hashes = true);
std::string sha256_file(const std::string& path);

// ---- inference --------------------------------------------------------------------------------
struct Options {
  std::string ort_library;  // empty: EDGERAIN_ORT_LIB, the build's default, then the loader's search path
  int threads = 0;          // 0: ONNX Runtime's default
  std::optional<int> tile;  // overrides the bundle (0 disables tiling)
  std::optional<int> overlap;
  std::string tta = "none";  // self-ensemble: none, x2 (+ left-right mirror), x4 (+ top-bottom, both)
  bool verify_hashes = true;
  bool verbose = false;
};

class Derainer {
 public:
  Derainer(const std::string& bundle, const Options& options = {});
  ~Derainer();
  Derainer(const Derainer&) = delete;
  Derainer& operator=(const Derainer&) = delete;

  // Derain one image (any size); returns the same size, clamped to [0, 1].
  Image run(const Image& input);
  // The router scores of the last run (empty without a router).
  const std::vector<float>& last_scores() const { return last_scores_; }
  const BundleSpec& spec() const { return spec_; }
  std::vector<std::string> providers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  BundleSpec spec_;
  int tile_ = 0;
  int overlap_ = 32;
  int tta_views_ = 1;
  std::vector<float> last_scores_;
};

}  // namespace edgerain
