// UpDWBlock on the CPU: bilinear x2 -> depthwise 3x3 -> LayerNorm(C) -> 1x1 -> GELU, computed per
// output pixel from the low-resolution input (the upsampled map is never built; docs/kernels.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"

namespace edgerain {

// x: (B, Cin, h, w) with strides xs; dw_w (Cin, 9), dw_b, ln_w, ln_b (Cin); pw_w (Cout, Cin), pw_b
// (Cout), all contiguous; y: (B, Cout, 2h, 2w) with strides ys.
template <typename T>
void updw_forward_cpu(const T* x, Strides4 xs, const T* dw_w, const T* dw_b, const T* ln_w, const T* ln_b,
                      const T* pw_w, const T* pw_b, T* y, Strides4 ys, const UpdwShape& s) {
  std::vector<T> feat(s.cin);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t i = 0; i < s.height; ++i) {
      const int64_t rows[3] = {std::max<int64_t>(i - 1, 0), i, std::min<int64_t>(i + 1, s.height - 1)};
      for (int64_t j = 0; j < s.width; ++j) {
        const int64_t cols[3] = {std::max<int64_t>(j - 1, 0), j, std::min<int64_t>(j + 1, s.width - 1)};
        for (int phase = 0; phase < 4; ++phase) {
          const int pa = phase / 2, pb = phase % 2;
          for (int64_t c = 0; c < s.cin; ++c) {
            const T* xc = x + b * xs.b + c * xs.c;
            T nb[3][3];
            for (int r = 0; r < 3; ++r)
              for (int q = 0; q < 3; ++q) nb[r][q] = xc[rows[r] * xs.y + cols[q] * xs.x];
            T acc = dw_b[c];
            for (int ty = 0; ty < 3; ++ty) {
              const int ky = pa + ty - 1;
              if (!up_tap_inside(i, ky, s.height)) continue;
              for (int tx = 0; tx < 3; ++tx) {
                const int kx = pb + tx - 1;
                if (!up_tap_inside(j, kx, s.width)) continue;
                T col[3];
                for (int r = 0; r < 3; ++r) col[r] = up_sample(nb[r][0], nb[r][1], nb[r][2], kx);
                acc += dw_w[c * 9 + ty * 3 + tx] * up_sample(col[0], col[1], col[2], ky);
              }
            }
            feat[c] = acc;
          }
          T mean = 0, var = 0;
          for (int64_t c = 0; c < s.cin; ++c) mean += feat[c];
          mean /= T(s.cin);
          for (int64_t c = 0; c < s.cin; ++c) var += (feat[c] - mean) * (feat[c] - mean);
          const T rstd = T(1) / std::sqrt(var / T(s.cin) + T(kLnEps));
          for (int64_t c = 0; c < s.cin; ++c) feat[c] = (feat[c] - mean) * rstd * ln_w[c] + ln_b[c];
          const int64_t oy = 2 * i + pa, ox = 2 * j + pb;
          for (int64_t n = 0; n < s.cout; ++n) {
            T acc = pw_b[n];
            for (int64_t c = 0; c < s.cin; ++c) acc += pw_w[n * s.cin + c] * feat[c];
            y[b * ys.b + n * ys.c + oy * ys.y + ox * ys.x] = T(0.5) * acc * (T(1) + std::erf(acc * T(M_SQRT1_2)));
          }
        }
      }
    }
  }
}

}  // namespace edgerain
