// Unit checks of the C++ processing convention (the Python side is checked in tests/runtime).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "edgerain/runtime.hpp"

static int failures = 0;
static int checks = 0;
#define CHECK(cond)                                                         \
  do {                                                                      \
    ++checks;                                                               \
    if (!(cond)) {                                                          \
      ++failures;                                                           \
      std::cerr << __FILE__ << ":" << __LINE__ << ": failed: " #cond "\n"; \
    }                                                                       \
  } while (0)

int main() {
  using namespace edgerain;
  // SHA-256 of "abc" (FIPS 180-4 example) and of the empty string.
  const std::string path = "edgerain_sha_test.bin";
  std::ofstream(path) << "abc";
  CHECK(sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::ofstream(path, std::ios::trunc).close();
  CHECK(sha256_file(path) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::remove(path.c_str());

  // Reflect padding where it fits, replicate where a side is too short.
  Image x(3, 2);
  for (size_t i = 0; i < x.data.size(); ++i) x.data[i] = static_cast<float>(i);
  Image p = pad_reflect_else_replicate(x, 4);  // 3x2 -> 4x4: pad 2 rows >= height 2 -> replicate
  CHECK(p.width == 4 && p.height == 4);
  CHECK(p.plane(0)[3] == x.plane(0)[2]);           // row 0, col 3 = edge of row 0
  CHECK(p.plane(0)[3 * 4 + 0] == x.plane(0)[3]);   // row 3 = row 1 replicated
  Image big(5, 5);
  for (size_t i = 0; i < big.data.size(); ++i) big.data[i] = static_cast<float>(i);
  Image q = pad_reflect_else_replicate(big, 8);  // pad 3 < 5 -> reflect
  CHECK(q.width == 8 && q.height == 8);
  CHECK(q.plane(0)[5] == big.plane(0)[3]);  // col 5 reflects col 3
  CHECK(q.plane(0)[7] == big.plane(0)[1]);  // col 7 reflects col 1

  // Tiles cover the side; ramps are 1 on image borders and 0 in the outer quarter of an overlap.
  const auto s = tile_starts(100, 40, 8);
  CHECK(s.front() == 0 && s.back() == 60);
  CHECK(tile_starts(30, 40, 8).size() == 1);
  const auto r = blend_ramp(40, 8, true, false);
  CHECK(r[0] == 1.0f && r[31] == 1.0f && r[39] == 0.0f && r[38] == 0.0f);
  CHECK(std::fabs(r[37] - 1.0f / 7.0f) < 1e-7f);

  // Mirrors: left-right reverses columns, top-bottom rows; each is its own inverse.
  const Image lr = flip(x, true, false), tb = flip(x, false, true), both = flip(x, true, true);
  CHECK(lr.plane(1)[0] == x.plane(1)[2] && lr.plane(1)[3] == x.plane(1)[5]);
  CHECK(tb.plane(2)[0] == x.plane(2)[3] && tb.plane(2)[5] == x.plane(2)[2]);
  CHECK(both.plane(0)[0] == x.plane(0)[5]);
  CHECK(flip(lr, true, false).data == x.data && flip(both, true, true).data == x.data);
  CHECK(tta_view_count("none") == 1 && tta_view_count("x2") == 2 && tta_view_count("x4") == 4);
  bool refused = false;
  try {
    tta_view_count("x8");
  } catch (const Error&) {
    refused = true;
  }
  CHECK(refused);

  // 8-bit encoding rounds half up and clamps.
  CHECK(to_u8(0.5f / 255.0f) == 1);
  CHECK(to_u8(-0.2f) == 0 && to_u8(1.7f) == 255);

  std::cout << "processing: " << (checks - failures) << " passed, " << failures << " failed\n";
  return failures == 0 ? 0 : 1;
}
