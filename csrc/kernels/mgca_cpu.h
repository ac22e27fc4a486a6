// MGCA window attention on the CPU: plain C++, one window at a time (docs/kernels.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

namespace edgerain {

// out_i = M_i * sum_j softmax_j(q_i . k_j / sqrt(d) + log(1 - M_j + eps)) v_j over the keys j of
// query i's window. T is float or double; statistics are computed in T.
template <typename T>
void mgca_forward_cpu(const T* q, Strides5 qs, const T* k, Strides5 ks, const T* v, Strides5 vs, const T* mask,
                      Strides4 ms, T* out, Strides5 os, const MgcaShape& s) {
  const int w = s.window;
  const T scale = T(1) / std::sqrt(T(s.head_dim));
  std::vector<int64_t> ys, xs;
  std::vector<T> bias, logits;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t wy = 0; wy < s.windows_y(); ++wy) {
      for (int64_t wx = 0; wx < s.windows_x(); ++wx) {
        // The window's pixels that lie inside the image.
        ys.clear();
        xs.clear();
        for (int dy = 0; dy < w; ++dy) {
          for (int dx = 0; dx < w; ++dx) {
            const int64_t y = wy * w - s.shift + dy, x = wx * w - s.shift + dx;
            if (y >= 0 && y < s.height && x >= 0 && x < s.width) {
              ys.push_back(y);
              xs.push_back(x);
            }
          }
        }
        const size_t n = ys.size();
        bias.resize(n);
        logits.resize(n);
        for (size_t j = 0; j < n; ++j) {
          bias[j] = std::log(T(1) - mask[b * ms.b + ys[j] * ms.y + xs[j] * ms.x] + T(kMaskEps));
        }
        for (int64_t h = 0; h < s.heads; ++h) {
          const T* qb = q + b * qs.b + h * qs.h;
          const T* kb = k + b * ks.b + h * ks.h;
          const T* vb = v + b * vs.b + h * vs.h;
          T* ob = out + b * os.b + h * os.h;
          for (size_t i = 0; i < n; ++i) {
            T row_max = -std::numeric_limits<T>::infinity();
            for (size_t j = 0; j < n; ++j) {
              T dot = 0;
              for (int64_t c = 0; c < s.head_dim; ++c) {
                dot += qb[c * qs.c + ys[i] * qs.y + xs[i] * qs.x] * kb[c * ks.c + ys[j] * ks.y + xs[j] * ks.x];
              }
              logits[j] = dot * scale + bias[j];
              row_max = std::max(row_max, logits[j]);
            }
            T denom = 0;
            for (size_t j = 0; j < n; ++j) {
              logits[j] = std::exp(logits[j] - row_max);
              denom += logits[j];
            }
            const T gate = mask[b * ms.b + ys[i] * ms.y + xs[i] * ms.x] / denom;
            for (int64_t c = 0; c < s.head_dim; ++c) {
              T acc = 0;
              for (size_t j = 0; j < n; ++j) acc += logits[j] * vb[c * vs.c + ys[j] * vs.y + xs[j] * vs.x];
              ob[c * os.c + ys[i] * os.y + xs[i] * os.x] = acc * gate;
            }
          }
        }
      }
    }
  }
}

}  // namespace edgerain
