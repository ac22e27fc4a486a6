// Image decode/encode with stb, and the 8-bit rounding rule of the bundle format.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "edgerain/runtime.hpp"

namespace edgerain {

uint8_t to_u8(float v) {
  // The same float32 arithmetic as the Python runtime: floor(clip(v) * 255 + 0.5).
  v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  return static_cast<uint8_t>(std::floor(v * 255.0f + 0.5f));
}

Image read_image(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error(path + ": no such image file");
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_file(f, &w, &h, &comp)) {
    std::fclose(f);
    throw Error(path + ": cannot decode image (" + stbi_failure_reason() + ")");
  }
  if (stbi_is_16_bit_from_file(f)) {
    std::fclose(f);
    throw Error(path + ": 16-bit images are not supported; edgerain expects 8-bit RGB or grayscale");
  }
  if (comp == 2 || comp == 4) {
    std::fclose(f);
    throw Error(path + ": image has an alpha channel (" + std::to_string(comp) +
                " channels); edgerain expects RGB or grayscale");
  }
  if (comp != 1 && comp != 3) {
    std::fclose(f);
    throw Error(path + ": unsupported channel count " + std::to_string(comp));
  }
  unsigned char* pixels = stbi_load_from_file(f, &w, &h, &comp, 3);
  std::fclose(f);
  if (pixels == nullptr) throw Error(path + ": cannot decode image (" + stbi_failure_reason() + ")");
  Image img(w, h);
  const size_t n = static_cast<size_t>(w) * h;
  for (size_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) img.plane(c)[i] = static_cast<float>(pixels[3 * i + c]) / 255.0f;
  }
  stbi_image_free(pixels);
  return img;
}

void write_png(const std::string& path, const Image& image) {
  const size_t n = static_cast<size_t>(image.width) * image.height;
  std::vector<uint8_t> rgb(3 * n);
  for (size_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) rgb[3 * i + c] = to_u8(image.plane(c)[i]);
  }
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  if (!stbi_write_png(tmp.c_str(), image.width, image.height, 3, rgb.data(), image.width * 3)) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot write the output image");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot move the output image into place");
  }
}

}  // namespace edgerain
