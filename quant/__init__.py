"""INT8 post-training quantization of edgerain networks with NVIDIA ModelOpt.

Python API (what ``edgerain quantize`` and ``edgerain export --precision int8`` call)::

    from edgerain.quant import quantize_model, export_qdq_onnx

    result = quantize_model(model, calib, *, method="max", percentile=99.99,
                            calib_size=(256, 256), calib_limit=32, exclude=(), progress=True)
        # -> QuantResult(model, settings, layers, never_run, counts, calibration_images)
        # calib: a folder of rainy images (or a rain/norain pair folder), or a list of (1,3,h,w)
        # tensors. result.model is a fake-quantized COPY (the float model is untouched);
        # method: "max" | "entropy" | "percentile" (activations; weights: per-channel max).

    export_qdq_onnx(module, example_inputs, path, *, input_names=("image",),
                    output_names=("output",), dynamic_axes=None, opset=17) -> Path
        # any nn.Module (e.g. a wrapper calling model.router or model.run_expert(i, x));
        # legacy exporter (dynamo=False): explicit QuantizeLinear/DequantizeLinear pairs.

    deployment_graphs(model, height, width) -> list[GraphSpec]   # bundle naming: context, main_<i>
    onnx_parity(module, path, inputs, optimize=False) -> float   # max |ORT - fake-quant torch|
    qdq_summary(path) -> dict                                    # Q/DQ counts, INT8 vs float convs
    save_quantized(model, path) / load_quantized(path)           # safetensors + JSON ModelOpt state
    quantize_and_gate(model, calib_dir, eval_dir, out, QuantizeOptions(...)) -> QuantReport
        # the whole `edgerain quantize` flow: gate, sensitivity, float layers, export, report.json

ModelOpt is imported lazily: importing this package does not need it; calling quantize_model
without it raises MissingCapabilityError with the install hint.
"""

from edgerain.quant.calibrate import QuantResult, load_calibration_images, quantize_model, quantizer_counts
from edgerain.quant.config import CALIBRATION_METHODS, QuantSettings
from edgerain.quant.export import GraphSpec, deployment_graphs, export_qdq_onnx, onnx_parity, qdq_summary
from edgerain.quant.gate import GateResult
from edgerain.quant.pipeline import QuantizeOptions, QuantReport, quantize_and_gate
from edgerain.quant.state import load_quantized, save_quantized

__all__ = [
    "CALIBRATION_METHODS",
    "GateResult",
    "GraphSpec",
    "QuantReport",
    "QuantResult",
    "QuantSettings",
    "QuantizeOptions",
    "deployment_graphs",
    "export_qdq_onnx",
    "load_calibration_images",
    "load_quantized",
    "onnx_parity",
    "qdq_summary",
    "quantize_and_gate",
    "quantize_model",
    "quantizer_counts",
    "save_quantized",
]
