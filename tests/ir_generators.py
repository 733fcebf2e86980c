"""Small style-based generators written as OpenVINO IR with OpenVINO's own op builders: a
mapping network (1, 8) -> (1, 8) and a synthesis network (1, 8) -> (1, 3, 16, 16) with three
style affines (one per modulated convolution, at 4, 8 and 16 px), saved as .xml + .bin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset1 as op1

W_DIM = 8


def _const(array) -> ov.Node:
    return op1.constant(np.asarray(array, dtype=np.float32))


def _modulated(x, w, channels: int, rng, name: str):
    """x * (1 + affine(w)) per channel: a style affine feeding a convolution."""
    weight = op1.constant(rng.standard_normal((channels, W_DIM)).astype(np.float32) * 0.3,
                          name=f"{name}.modulation.weight")  # fmt: skip
    style = op1.add(op1.matmul(w, weight, False, True), _const(np.ones((1, channels))))
    scale = op1.reshape(style, op1.constant(np.int64([0, channels, 1, 1])), True)
    return op1.multiply(x, scale)


def save_style_generator(
    folder: Path, *, mapping: bool = True, seed: int = 0, upscale: int = 1
) -> Path:
    """Write `SynthesisNetwork.xml` (+ `MappingNetwork.xml`) into `folder`; returns the
    synthesis XML's path. `upscale` > 1 enlarges the 16-px image by that factor (nearest, a
    grouped transposed convolution of ones): a big output at a small network's cost."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w = op1.parameter([1, W_DIM], np.float32, name="style")
    # The 16 px affine comes first in the graph: slots must be ordered by resolution anyway.
    start = _const(rng.standard_normal((1, 4, 4, 4)))
    x = _modulated(start, w, 4, rng, "early")
    x = op1.convolution(x, _const(rng.standard_normal((6, 4, 3, 3)) * 0.3),
                        [1, 1], [1, 1], [1, 1], [1, 1])  # fmt: skip
    x = op1.prelu(x, _const([0.2]))
    x = _modulated(x, w, 6, rng, "middle")
    x = op1.group_convolution_backprop_data(
        x, _const(rng.standard_normal((2, 3, 3, 2, 2)) * 0.3), [2, 2], None, [0, 0], [0, 0]
    )
    x = op1.prelu(x, _const([0.2]))
    x = _modulated(x, w, 6, rng, "late")
    x = op1.group_convolution_backprop_data(
        x, _const(rng.standard_normal((1, 6, 3, 2, 2)) * 0.3), [2, 2], None, [0, 0], [0, 0]
    )
    image = op1.tanh(x)
    if upscale > 1:
        ones = _const(np.ones((3, 1, 1, upscale, upscale)))
        image = op1.group_convolution_backprop_data(
            image, ones, [upscale, upscale], None, [0, 0], [0, 0]
        )
    synthesis = folder / "SynthesisNetwork.xml"
    ov.save_model(ov.Model([image], [w], "synthesis"), synthesis, compress_to_fp16=False)
    if mapping:
        z = op1.parameter([1, W_DIM], np.float32, name="var")
        h = op1.matmul(z, _const(rng.standard_normal((W_DIM, W_DIM)) * 0.5), False, True)
        h = op1.prelu(op1.add(h, _const(rng.standard_normal((1, W_DIM)) * 0.1)), _const([0.2]))
        ov.save_model(ov.Model([h], [z], "mapping"), folder / "MappingNetwork.xml",
                      compress_to_fp16=False)  # fmt: skip
    return synthesis


def set_first_attribute(xml: Path, name: str, value: str) -> None:
    """Rewrite the first `name="..."` attribute of an IR's XML."""
    text = xml.read_text()
    first = text.index(f'{name}="') + len(f'{name}="')
    xml.write_text(text[:first] + value + text[text.index('"', first) :])
