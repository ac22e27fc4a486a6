// Padding, tiling and blending: the arithmetic of edgerain/runtime/processing.py, in float32.
#include <algorithm>
#include <vector>

#include "edgerain/runtime.hpp"

namespace edgerain {

namespace {
// numpy's "reflect" (no edge repeat) and "edge" index maps for padding at the end only.
int reflect_index(int i, int n) { return i < n ? i : 2 * (n - 1) - i; }
int edge_index(int i, int n) { return i < n ? i : n - 1; }
}  // namespace

Image pad_reflect_else_replicate(const Image& x, int multiple) {
  const int ph = (multiple - x.height % multiple) % multiple;
  const int pw = (multiple - x.width % multiple) % multiple;
  if (ph == 0 && pw == 0) return x;
  const bool reflect = ph < x.height && pw < x.width;
  Image out(x.width + pw, x.height + ph);
  for (int c = 0; c < 3; ++c) {
    const float* src = x.plane(c);
    float* dst = out.plane(c);
    for (int y = 0; y < out.height; ++y) {
      const int sy = reflect ? reflect_index(y, x.height) : edge_index(y, x.height);
      for (int xx = 0; xx < out.width; ++xx) {
        const int sx = reflect ? reflect_index(xx, x.width) : edge_index(xx, x.width);
        dst[static_cast<size_t>(y) * out.width + xx] = src[static_cast<size_t>(sy) * x.width + sx];
      }
    }
  }
  return out;
}

Image crop(const Image& x, int x0, int y0, int w, int h) {
  Image out(w, h);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < h; ++y) {
      const float* src = x.plane(c) + static_cast<size_t>(y0 + y) * x.width + x0;
      std::copy(src, src + w, out.plane(c) + static_cast<size_t>(y) * w);
    }
  }
  return out;
}

std::vector<int> tile_starts(int size, int tile, int overlap) {
  if (size <= tile) return {0};
  std::vector<int> starts;
  const int step = tile - overlap;
  for (int s = 0; s < size - tile; s += step) starts.push_back(s);
  starts.push_back(size - tile);
  return starts;
}

std::vector<float> blend_ramp(int n, int overlap, bool at_start, bool at_end) {
  std::vector<float> w(n, 1.0f);
  if (overlap > 0) {
    const int margin = overlap / 4;
    std::vector<float> r(overlap, 0.0f);
    for (int i = margin; i < overlap; ++i) {
      r[i] = static_cast<float>(i - margin + 1) / static_cast<float>(overlap - margin + 1);
    }
    if (!at_start) {
      for (int i = 0; i < overlap; ++i) w[i] = std::min(w[i], r[i]);
    }
    if (!at_end) {
      for (int i = 0; i < overlap; ++i) w[n - overlap + i] = std::min(w[n - overlap + i], r[overlap - 1 - i]);
    }
  }
  return w;
}

Image flip(const Image& x, bool left_right, bool top_bottom) {
  Image out(x.width, x.height);
  for (int c = 0; c < 3; ++c) {
    const float* src = x.plane(c);
    float* dst = out.plane(c);
    for (int y = 0; y < x.height; ++y) {
      const int sy = top_bottom ? x.height - 1 - y : y;
      for (int xx = 0; xx < x.width; ++xx) {
        const int sx = left_right ? x.width - 1 - xx : xx;
        dst[static_cast<size_t>(y) * x.width + xx] = src[static_cast<size_t>(sy) * x.width + sx];
      }
    }
  }
  return out;
}

int tta_view_count(const std::string& mode) {
  if (mode == "none") return 1;
  if (mode == "x2") return 2;
  if (mode == "x4") return 4;
  throw Error("unknown --tta '" + mode + "'; choose one of none, x2, x4");
}

}  // namespace edgerain
