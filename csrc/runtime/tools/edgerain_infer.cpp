// edgerain-infer BUNDLE INPUT OUTPUT: derain one image file with a bundle.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "edgerain/runtime.hpp"

namespace {

const char* kUsage =
    "usage: edgerain-infer BUNDLE INPUT OUTPUT [--tile N] [--overlap N] [--tta none|x2|x4] [--threads N]\n"
    "                      [--ort-lib PATH] [--no-verify] [--verbose]\n"
    "Derains INPUT (8-bit PNG/JPEG/BMP, RGB or grayscale) with the bundle and writes OUTPUT as PNG.\n"
    "--tta averages over mirrored views (x2: left-right, x4: and top-bottom) at 2x / 4x the time.\n"
    "ONNX Runtime is loaded from --ort-lib, $EDGERAIN_ORT_LIB, the build's default, or the library path.\n";

int parse_int(const std::string& flag, const char* value) {
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || v < 0 || v > 1 << 20) throw edgerain::Error(flag + " needs a non-negative integer");
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> positional;
    edgerain::Options options;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> const char* {
        if (i + 1 >= argc) throw edgerain::Error(arg + " needs a value");
        return argv[++i];
      };
      if (arg == "-h" || arg == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (arg == "--tile") {
        options.tile = parse_int(arg, value());
      } else if (arg == "--overlap") {
        options.overlap = parse_int(arg, value());
      } else if (arg == "--tta") {
        options.tta = value();
        edgerain::tta_view_count(options.tta);  // a bad mode fails before the image is read
      } else if (arg == "--threads") {
        options.threads = parse_int(arg, value());
      } else if (arg == "--ort-lib") {
        options.ort_library = value();
      } else if (arg == "--no-verify") {
        options.verify_hashes = false;
      } else if (arg == "--verbose") {
        options.verbose = true;
      } else if (arg.size() > 1 && arg[0] == '-') {
        throw edgerain::Error("unknown option " + arg + " (see --help)");
      } else {
        positional.push_back(arg);
      }
    }
    if (positional.size() != 3) {
      std::cerr << kUsage;
      return 2;
    }
    // Read the image before building sessions: a bad input fails fast.
    const edgerain::Image input = edgerain::read_image(positional[1]);
    edgerain::Derainer derainer(positional[0], options);
    const edgerain::Image output = derainer.run(input);
    edgerain::write_png(positional[2], output);
    if (options.verbose && !derainer.last_scores().empty()) {
      std::cerr << "edgerain: router scores";
      for (float s : derainer.last_scores()) std::cerr << " " << s;
      std::cerr << "\n";
    }
    return 0;
  } catch (const edgerain::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
