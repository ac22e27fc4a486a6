"""Run exported bundles (ONNX Runtime, TensorRT) or PyTorch models on images.

Imports only the bundle format, numpy, onnxruntime and (optionally) tensorrt / torch: never the
exporter, quantization or training code, so a device needs none of those.
"""

from edgerain.runtime.derainer import BACKENDS, Derainer, derain_paths_with_bundle

__all__ = ["BACKENDS", "Derainer", "derain_paths_with_bundle"]
