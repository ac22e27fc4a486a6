// Reading a bundle's manifest (nlohmann::json) and checking its files' SHA-256 hashes.
#include <array>
#include <filesystem>
#include <map>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <sys/stat.h>

#include "edgerain/runtime.hpp"

namespace edgerain {

namespace {

// SHA-256 (FIPS 180-4), streaming over a file.
class Sha256 {
 public:
  void update(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      block_[fill_++] = data[i];
      if (fill_ == 64) {
        compress();
        fill_ = 0;
      }
    }
    length_ += n;
  }
  std::string hex() {
    const uint64_t bits = length_ * 8;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    for (int i = 7; i >= 0; --i) {
      const uint8_t b = static_cast<uint8_t>(bits >> (8 * i));
      update(&b, 1);
    }
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h_) {
      for (int i = 28; i >= 0; i -= 4) out.push_back(digits[(v >> i) & 0xf]);
    }
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static const std::array<uint32_t, 64> k = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::array<uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t(block_[4 * i]) << 24) | (uint32_t(block_[4 * i + 1]) << 16) |
             (uint32_t(block_[4 * i + 2]) << 8) | uint32_t(block_[4 * i + 3]);
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a; h_[1] += b; h_[2] += c; h_[3] += d; h_[4] += e; h_[5] += f; h_[6] += g; h_[7] += h;
  }
  std::array<uint32_t, 8> h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> block_{};
  size_t fill_ = 0;
  uint64_t length_ = 0;
};

bool is_file(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read");
  Sha256 sha;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.update(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(in.gcount()));
  }
  return sha.hex();
}

namespace {

// The input convention this runtime implements (edgerain/bundle.py INPUT_CONVENTION).
void check_input_convention(const nlohmann::json& input, const std::string& where) {
  const std::vector<std::pair<std::string, nlohmann::json>> expected = {
      {"layout", "NCHW"},
      {"color", "RGB"},
      {"dtype", "float32"},
      {"range", nlohmann::json::array({0.0, 1.0})},
      {"batch", 1},
      {"pad_mode", "reflect-else-replicate"},
      {"output_range", nlohmann::json::array({0.0, 1.0})},
      {"encode", "uint8-round-half-up"},
  };
  for (const auto& [key, value] : expected) {
    if (!input.contains(key) || input[key] != value) {
      throw Error(where + ": input." + key + " is not " + value.dump() + ", the convention this runtime follows");
    }
  }
}

}  // namespace

BundleSpec load_bundle(const std::string& root_in, bool verify_hashes) {
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  const std::string manifest_path = root + "/manifest.json";
  if (!std::filesystem::is_directory(root)) throw Error(root + " is not a bundle folder");
  if (!is_file(manifest_path)) throw Error(root + " is not a bundle (or is incomplete): manifest.json is missing");
  nlohmann::json m;
  try {
    std::ifstream in(manifest_path);
    in >> m;
  } catch (const nlohmann::json::exception& e) {
    throw Error(manifest_path + " is not valid JSON (" + e.what() + ")");
  }
  BundleSpec spec;
  spec.root = root;
  std::map<std::string, std::pair<std::string, uint64_t>> files;  // name -> (sha256, bytes)
  try {
    if (m.at("format").get<std::string>() != "edgerain-bundle") throw Error(manifest_path + " is not an edgerain bundle");
    const int version = m.at("format_version").get<int>();
    if (version != 1) {
      throw Error("bundle format version " + std::to_string(version) +
                  " is not supported (this runtime reads version 1); re-export the bundle");
    }
    spec.model_name = m.at("model").at("name").get<std::string>();
    const auto& input = m.at("input");
    check_input_convention(input, manifest_path);
    spec.pad_multiple = input.at("pad_multiple").get<int>();
    if (spec.pad_multiple < 1) throw Error(manifest_path + ": input.pad_multiple must be at least 1");
    // Optional: bundles written before it existed accept any size.
    if (input.contains("min_side")) spec.min_side = input.at("min_side").get<int>();
    if (spec.min_side < 1) throw Error(manifest_path + ": input.min_side must be at least 1");
    const auto& graphs = m.at("graphs");
    if (graphs.contains("context") && !graphs["context"].is_null()) {
      const auto& ctx = graphs["context"];
      spec.context_file = root + "/" + ctx.at("file").get<std::string>();
      spec.context_kind = ctx.at("kind").get<std::string>();
      if (spec.context_kind != "router" && spec.context_kind != "prior") {
        throw Error(manifest_path + ": unknown context kind '" + spec.context_kind + "'");
      }
      if (spec.context_kind == "router") spec.routing_rule = ctx.at("rule").get<std::string>();
    }
    for (const auto& g : graphs.at("main")) spec.main_files.push_back(root + "/" + g.at("file").get<std::string>());
    const auto& tiling = m.at("tiling");
    if (!tiling.at("tile").is_null()) spec.tile = tiling["tile"].get<int>();
    spec.overlap = tiling.at("overlap").get<int>();
    // The execution-provider order the export chose for its target (top level; else the target's own).
    const auto& target = m.at("target");
    if (m.contains("providers") && m["providers"].is_array()) {
      spec.providers = m["providers"].get<std::vector<std::string>>();
    } else if (target.contains("providers")) {
      spec.providers = target["providers"].get<std::vector<std::string>>();
    }
    if (spec.providers.empty()) spec.providers = {"CPUExecutionProvider"};
    for (const auto& [name, entry] : m.at("files").items()) {
      files[name] = {entry.at("sha256").get<std::string>(), entry.at("bytes").get<uint64_t>()};
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(manifest_path + " does not follow the bundle format: " + e.what());
  }
  if (spec.main_files.empty()) throw Error(manifest_path + " lists no main graph");
  if (spec.context_kind == "router" && spec.routing_rule != "hard-top1" && spec.routing_rule != "soft") {
    throw Error(manifest_path + ": unknown routing rule '" + spec.routing_rule + "'");
  }
  if (spec.tile > 0 && 2 * spec.overlap >= spec.tile) throw Error(manifest_path + ": tiling overlap too large");
  std::vector<std::string> graphs = spec.main_files;
  if (spec.context_file) graphs.push_back(*spec.context_file);
  for (const auto& f : graphs) {
    const std::string name = f.substr(root.size() + 1);
    if (!is_file(f)) throw Error("bundle " + root + " is incomplete: " + name + " is missing");
    if (files.count(name) == 0) throw Error(manifest_path + " does not hash " + name + ", which the bundle uses");
  }
  if (verify_hashes) {
    // As edgerain.bundle.check_files: every listed file present and unaltered, nothing unlisted.
    for (const auto& [name, entry] : files) {
      const std::string path = root + "/" + name;
      if (!is_file(path)) throw Error("bundle " + root + " is incomplete: " + name + " is missing");
      if (std::filesystem::file_size(path) != entry.second || sha256_file(path) != entry.first) {
        throw Error("bundle " + root + ": " + name + " does not match its sha256 in the manifest (altered)");
      }
    }
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      if (!e.is_regular_file()) continue;
      const std::string rel = std::filesystem::relative(e.path(), root).generic_string();
      if (rel == "manifest.json" || rel.rfind("engines/", 0) == 0) continue;
      if (files.count(rel) == 0) throw Error("bundle " + root + " holds files its manifest does not list: " + rel);
    }
  }
  return spec;
}

}  // namespace edgerain
