"""The INT8 recipe: per-channel weights, per-tensor activations, a choice of calibration method.

ModelOpt's ``INT8_DEFAULT_CFG`` disables every module whose name matches ``*visual*`` or
``*router*`` (rules written for vision-language LLMs), which would silently leave the CLIP tower of
every edgerain network (``router.image.visual``, ``clip.visual``, ``encoder.visual``) in float.
edgerain builds its own configuration instead, so the CLIP image encoder is quantized like every
other sub-network.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgerain.errors import EdgerainError

CALIBRATION_METHODS = ("max", "entropy", "percentile")
# Where Q/DQ pairs go. "tensorrt": on the inputs (and weights) of convs/linears only, the placement
# TensorRT expects (it fuses the float ops in between into INT8 kernels). "ort": also on the
# outputs of convs/linears: ONNX Runtime's CPU provider only turns a conv into QLinearConv when the
# pattern is DQ -> Conv -> Q, so with "tensorrt" placement it runs float convs on dequantized
# tensors (slower than FP32); with "ort" placement it runs INT8 convs.
QDQ_PLACEMENTS = ("tensorrt", "ort")


@dataclasses.dataclass(frozen=True)
class QuantSettings:
    """How activations are calibrated. Weights always use their per-output-channel absolute max."""

    method: str = "max"
    percentile: float = 99.99  # used by method="percentile"
    # method="entropy": ModelOpt tries a threshold at every histogram bin from 128 to 2048 with
    # stride 1, about 8 s per activation quantizer on one CPU core (hours for RN50 + 3 experts).
    # Every 8th bin (0.4% of the range apart) costs an eighth of that.
    entropy_stride: int = 8
    num_bits: int = 8
    placement: str = "tensorrt"

    def __post_init__(self) -> None:
        if self.placement not in QDQ_PLACEMENTS:
            raise EdgerainError(f"unknown Q/DQ placement '{self.placement}'; choose one of {', '.join(QDQ_PLACEMENTS)}")
        if self.method not in CALIBRATION_METHODS:
            raise EdgerainError(
                f"unknown calibration method '{self.method}'; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.entropy_stride < 1:
            raise EdgerainError(f"entropy stride must be >= 1, got {self.entropy_stride}")
        if not 0.0 < self.percentile <= 100.0:
            raise EdgerainError(f"percentile must be in (0, 100], got {self.percentile}")

    @property
    def activation_calibrator(self) -> str:
        """ModelOpt calibrator name: entropy and percentile both read a histogram of activations."""
        return "max" if self.method == "max" else "histogram"


def modelopt_config(settings: QuantSettings) -> dict[str, Any]:
    """ModelOpt ``quantize`` config: quantizers on every conv/linear/pool input and conv/linear weight.

    ``algorithm`` is ``None`` because edgerain runs the calibration itself (see
    :func:`edgerain.quant.calibrate.calibrate`): ModelOpt's ``max`` algorithm cannot finish
    histogram calibrators, which need the entropy/percentile method passed at the end.
    """
    bits = settings.num_bits
    activation = {"num_bits": bits, "axis": None, "calibrator": settings.activation_calibrator}
    outputs = []
    if settings.placement == "ort":
        outputs = [
            {"quantizer_name": "*output_quantizer", "parent_class": cls, "cfg": activation}
            for cls in ("nn.Conv2d", "nn.Linear")
        ]
    return {
        "quant_cfg": [
            {"quantizer_name": "*", "enable": False},
            {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": bits, "axis": 0}},
            {"quantizer_name": "*input_quantizer", "cfg": activation},
            *outputs,
            # BatchNorm stays float: exporters and TensorRT fold it into the preceding conv.
            {"quantizer_name": "*", "parent_class": "nn.BatchNorm1d", "enable": False},
            {"quantizer_name": "*", "parent_class": "nn.BatchNorm2d", "enable": False},
        ],
        "algorithm": None,
    }
