"""Our OpenVINO IR reader and torch executor against the OpenVINO runtime (the oracle): every
op on small graphs built with OpenVINO's own op builders and saved as IR (broadcasting,
negative axes, shape subgraphs at several batch sizes, grouped transposed convolutions with
stride and padding), forward-mode JVPs and vmap, and the bad files a user may hand it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset1 as op1
import openvino.opset3 as op3
import openvino.opset8 as op8
import pytest
import torch
import torch.nn.functional as F

from ir_generators import set_first_attribute
from lowrankgan.errors import UserInputError
from lowrankgan.models.openvino import ops
from lowrankgan.models.openvino.ir import read_ir
from lowrankgan.models.openvino.network import IRNetwork

RNG = np.random.default_rng(0)


def _save(tmp_path: Path, outputs, parameters, name: str = "graph") -> Path:
    path = tmp_path / f"{name}.xml"
    ov.save_model(ov.Model(outputs, parameters, name), path, compress_to_fp16=False)
    return path


def _runtime(path: Path, *inputs: np.ndarray) -> list[np.ndarray]:
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(list(inputs))
    return [result[output] for output in compiled.outputs]


def _ours(path: Path, *inputs: np.ndarray) -> list[np.ndarray]:
    network = IRNetwork(read_ir(path))
    with torch.no_grad():
        out = network(*(torch.from_numpy(x) for x in inputs))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def assert_matches(path: Path, *inputs: np.ndarray, rtol: float = 1e-5) -> None:
    expected, got = _runtime(path, *inputs), _ours(path, *inputs)
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == tuple(want.shape)
        scale = max(float(np.abs(want).max()), 1e-12)
        assert float(np.abs(have - want).max()) <= rtol * scale


def data(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def const(array) -> ov.Node:
    return op1.constant(np.asarray(array))


def param(*shape: int, name: str = "x") -> ov.Node:
    return op1.parameter(list(shape), np.float32, name=name)


def test_elementwise_ops_broadcast_as_numpy(tmp_path):
    x = param(2, 3, 4)
    outs = [
        op1.add(x, const(data(3, 1))),
        op1.multiply(x, const(data(4))),
        op1.subtract(const(data(1, 4)), x),
        op1.divide(x, const(np.abs(data(2, 1, 1)) + 1)),
        op1.power(op1.add(op1.multiply(x, x), const(np.float32([1.0]))), const(np.float32(-0.5))),
    ]
    assert_matches(_save(tmp_path, outs, [x]), data(2, 3, 4))


@pytest.mark.parametrize(
    "shape, slope", [((2, 3, 4, 4), (3,)), ((2, 5), (5,)), ((2, 3, 4), (1,)), ((2, 4, 3), (3,))]
)
def test_prelu_applies_a_channel_slope_along_axis_1(tmp_path, shape, slope):
    x = param(*shape)
    path = _save(tmp_path, [op1.prelu(x, const(data(*slope)))], [x])
    assert_matches(path, data(*shape))


@pytest.mark.parametrize(
    "a, b, ta, tb",
    [
        ((2, 3, 4), (4, 5), False, False),
        ((2, 4, 3), (5, 4), True, True),
        ((1, 512), (64, 512), False, True),
        ((4,), (4, 5), False, False),
        ((3, 4), (4,), False, False),
        ((2, 1, 3, 4), (5, 4, 6), False, False),
    ],
)
def test_matmul_transposes_and_vectors(tmp_path, a, b, ta, tb):
    x = param(*a)
    path = _save(tmp_path, [op1.matmul(x, const(data(*b)), ta, tb)], [x])
    assert_matches(path, data(*a))


@pytest.mark.parametrize("keep", [True, False])
def test_reduce_mean_with_negative_axes(tmp_path, keep):
    x = param(2, 3, 4, 5)
    path = _save(tmp_path, [op1.reduce_mean(x, const(np.int64([-1, 1])), keep)], [x])
    assert_matches(path, data(2, 3, 4, 5))


def _shape_graph(tmp_path: Path) -> Path:
    """(n, 6) -> (n, 2, 3) through ShapeOf -> Gather -> Unsqueeze -> Concat -> Reshape, and
    (n, 6) -> (n, 3, 2) through a special-zero Reshape [0, -1, 2]."""
    x = op1.parameter([-1, 6], np.float32, name="x")
    batch = op8.gather(op3.shape_of(x), const(np.int64(0)), const(np.int64(0)))
    target = op1.concat([op1.unsqueeze(batch, const(np.int64([0]))), const(np.int64([2, 3]))], 0)
    first = op1.reshape(x, target, False)
    second = op1.reshape(op1.multiply(x, const(np.float32(2))), const(np.int64([0, -1, 2])), True)
    return _save(tmp_path, [first, second], [x])


@pytest.mark.parametrize("batch", [1, 3])
def test_shape_subgraphs_work_for_any_batch(tmp_path, batch):
    assert_matches(_shape_graph(tmp_path), data(batch, 6))


def test_shape_subgraphs_work_under_vmap(tmp_path):
    network = IRNetwork(read_ir(_shape_graph(tmp_path)))
    x = torch.from_numpy(data(4, 6))
    batched = network(x)
    # Each example alone, as (1, 6): vmap hides the outer axis from ShapeOf.
    mapped = torch.func.vmap(lambda row: network(row.unsqueeze(0)))(x)
    for whole, one in zip(batched, mapped, strict=True):
        torch.testing.assert_close(one.squeeze(1), whole, rtol=0, atol=0)


def test_gather_takes_negative_indices_of_any_shape(tmp_path):
    x = param(4, 5)
    indices = const(np.int64([[-1, 0], [2, -4]]))
    path = _save(tmp_path, [op8.gather(x, indices, const(np.int64(-1)))], [x])
    assert_matches(path, data(4, 5))


def test_squeeze_and_unsqueeze_with_negative_axes(tmp_path):
    x = param(2, 1, 3, 1)
    outs = [
        op1.squeeze(x, const(np.int64([-1]))),
        op1.squeeze(x, const(np.int64([1, -1]))),
        op1.unsqueeze(x, const(np.int64([0, -1]))),
    ]
    assert_matches(_save(tmp_path, outs, [x]), data(2, 1, 3, 1))


def test_broadcast_modes(tmp_path):
    x = param(3, 1)
    outs = [
        op3.broadcast(x, const(np.int64([2, 3, 4])), broadcast_spec="numpy"),
        op3.broadcast(x, const(np.int64([1, 4])), broadcast_spec="bidirectional"),
        op3.broadcast(
            x, const(np.int64([2, 3, 1, 5])), const(np.int64([1, 2])), broadcast_spec="explicit"
        ),
    ]
    assert_matches(_save(tmp_path, outs, [x]), data(3, 1))


def test_tile_with_fewer_and_more_repeats_than_axes(tmp_path):
    x = param(2, 3)
    outs = [op1.tile(x, const(np.int64([2]))), op1.tile(x, const(np.int64([2, 1, 3])))]
    assert_matches(_save(tmp_path, outs, [x]), data(2, 3))


def test_variadic_split_infers_a_minus_one(tmp_path):
    x = param(2, 3, 7)
    split = op1.variadic_split(x, const(np.int64(-1)), const(np.int64([2, -1, 1])))
    assert_matches(_save(tmp_path, list(split.outputs()), [x]), data(2, 3, 7))


@pytest.mark.parametrize(
    "strides, pads_begin, pads_end, dilations, auto_pad",
    [
        ([1, 1], [1, 1], [1, 1], [1, 1], "explicit"),
        ([2, 1], [1, 0], [0, 2], [1, 2], "explicit"),
        ([2, 2], [0, 0], [0, 0], [1, 1], "same_upper"),
        ([2, 2], [0, 0], [0, 0], [1, 1], "same_lower"),
        ([1, 2], [0, 0], [0, 0], [1, 1], "valid"),
    ],
)
def test_convolutions(tmp_path, strides, pads_begin, pads_end, dilations, auto_pad):
    x = param(2, 6, 9, 8)
    plain = op1.convolution(
        x, const(data(4, 6, 3, 3)), strides, pads_begin, pads_end, dilations, auto_pad
    )
    grouped = op1.group_convolution(
        x, const(data(3, 2, 2, 3, 3)), strides, pads_begin, pads_end, dilations, auto_pad
    )
    assert_matches(_save(tmp_path, [plain, grouped], [x]), data(2, 6, 9, 8))


@pytest.mark.parametrize(
    "strides, pads_begin, pads_end, output_padding",
    [
        ([1, 2], [0, 0], [0, 0], [0, 0]),
        ([2, 1], [0, 0], [0, 0], [0, 0]),
        ([2, 2], [1, 0], [0, 1], [1, 0]),
        ([3, 2], [1, 1], [2, 0], [2, 1]),
    ],
)
def test_grouped_transposed_convolutions(tmp_path, strides, pads_begin, pads_end, output_padding):
    x = param(2, 6, 5, 4)
    grouped = op1.group_convolution_backprop_data(
        x, const(data(3, 2, 4, 3, 2)), strides, None, pads_begin, pads_end,
        output_padding=output_padding,
    )  # fmt: skip
    plain = op1.convolution_backprop_data(
        x, const(data(6, 5, 3, 3)), strides, None, pads_begin, pads_end,
        output_padding=output_padding,
    )  # fmt: skip
    assert_matches(_save(tmp_path, [grouped, plain], [x]), data(2, 6, 5, 4))


@pytest.mark.parametrize(
    "auto_pad, output_shape",
    [
        ("same_upper", (9, 10)),
        ("same_lower", (9, 10)),
        ("explicit", (9, 10)),
        ("same_upper", None),
        ("same_lower", None),
    ],
)
def test_transposed_convolution_to_an_output_shape(tmp_path, auto_pad, output_shape):
    x = param(1, 4, 5, 5)
    shape = None if output_shape is None else const(np.int64(output_shape))
    out = op1.convolution_backprop_data(
        x, const(data(4, 3, 3, 3)), [2, 2], shape, auto_pad=auto_pad
    )
    assert_matches(_save(tmp_path, [out], [x]), data(1, 4, 5, 5))


def _mlp(tmp_path: Path) -> Path:
    """A pixel-norm and two MatMul + PReLU layers, as a mapping network is built."""
    x = param(1, 8)
    norm = op1.power(
        op1.add(op1.reduce_mean(op1.multiply(x, x), const(np.int64([1])), True),
                const(np.float32(1e-8))),
        const(np.float32(-0.5)),
    )  # fmt: skip
    h = op1.multiply(x, norm)
    for _ in range(2):
        h = op1.add(op1.matmul(h, const(data(8, 8)), False, True), const(data(1, 8)))
        h = op1.prelu(h, const(np.float32([0.2])))
    return _save(tmp_path, [h], [x])


def test_forward_mode_jvp_matches_finite_differences(tmp_path):
    network = IRNetwork(read_ir(_mlp(tmp_path))).double()
    point = torch.from_numpy(data(1, 8)).double()
    tangent = torch.from_numpy(data(1, 8)).double()
    _, jvp = torch.func.jvp(network, (point,), (tangent,))
    eps = 1e-6
    numeric = (network(point + eps * tangent) - network(point - eps * tangent)) / (2 * eps)
    torch.testing.assert_close(jvp, numeric, rtol=1e-6, atol=1e-8)


def test_vmapped_jvps_equal_one_at_a_time(tmp_path):
    network = IRNetwork(read_ir(_mlp(tmp_path)))
    point = torch.from_numpy(data(1, 8))
    tangents = torch.eye(8).reshape(8, 1, 8)

    def jvp(tangent):
        return torch.func.jvp(network, (point,), (tangent,))[1]

    mapped = torch.func.vmap(jvp)(tangents)
    looped = torch.stack([jvp(t) for t in tangents])
    torch.testing.assert_close(mapped, looped, rtol=1e-6, atol=1e-7)


def _conv_net(tmp_path: Path) -> Path:
    """Image x (1, 3, 6, 6) and style s (1, 4): a convolution with a constant weight, one
    whose weight is modulated by s (so it has a tangent), a PReLU, and a grouped strided
    transposed convolution with padding."""
    x, style = param(1, 3, 6, 6), param(1, 4, name="s")
    h = op1.convolution(x, const(data(4, 3, 3, 3)), [1, 1], [1, 1], [1, 1], [1, 1])
    modulated = op1.multiply(
        const(data(4, 4, 3, 3)), op1.reshape(style, const(np.int64([4, 1, 1, 1])), False)
    )
    h = op1.convolution(h, modulated, [1, 1], [0, 0], [1, 1], [1, 1])
    h = op1.prelu(h, const(np.float32([0.2])))
    weight = const(data(2, 2, 3, 3, 3))  # 2 groups of 2 -> 3 channels each
    h = op1.group_convolution_backprop_data(h, weight, [2, 2], [1, 1], [0, 0], [1, 1])
    return _save(tmp_path, [h], [x, style])


def test_convolution_derivatives_match_finite_differences_in_both_modes(tmp_path):
    """Forward mode (constant and modulated weights) and reverse mode through the
    executor's convolutions, in float64, against central differences; `<u, J v>` must be
    `<J^T u, v>`."""
    network = IRNetwork(read_ir(_conv_net(tmp_path))).double()
    points = (torch.from_numpy(data(1, 3, 6, 6)).double(), torch.from_numpy(data(1, 4)).double())
    tangents = (torch.from_numpy(data(1, 3, 6, 6)).double(), torch.from_numpy(data(1, 4)).double())
    out, jvp = torch.func.jvp(network, points, tangents)
    eps = 1e-6
    ahead = network(*(p + eps * t for p, t in zip(points, tangents, strict=True)))
    behind = network(*(p - eps * t for p, t in zip(points, tangents, strict=True)))
    torch.testing.assert_close(jvp, (ahead - behind) / (2 * eps), rtol=1e-6, atol=1e-8)
    cotangent = torch.randn_like(out)
    _, pull = torch.func.vjp(network, *points)
    pulled = pull(cotangent)
    inner = sum((g * t).sum() for g, t in zip(pulled, tangents, strict=True))
    torch.testing.assert_close(inner, (cotangent * jvp).sum(), rtol=1e-10, atol=1e-12)
    # batched: vmapped products equal looped ones
    many = torch.randn(3, *out.shape, dtype=torch.float64)
    mapped = torch.func.vmap(lambda c: pull(c)[1])(many)
    torch.testing.assert_close(mapped, torch.stack([pull(c)[1] for c in many]))
    styles = torch.randn(3, 1, 4, dtype=torch.float64)

    def push(t: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(lambda s: network(points[0], s), (points[1],), (t,))[1]

    torch.testing.assert_close(
        torch.func.vmap(push)(styles), torch.stack([push(t) for t in styles])
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_prelu_derivatives_pass_torch_gradcheck_in_both_modes(channels):
    """The executor's PReLU Function (its own rules, the slope's included) against numerical
    derivatives, forward and reverse, batched too."""
    generator = torch.Generator().manual_seed(0)
    data_ = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    slope = torch.rand(1, channels, 1, 1, dtype=torch.float64, generator=generator)
    slope.requires_grad_(True)
    assert torch.autograd.gradcheck(
        ops._PReLU.apply, (data_, slope), check_forward_ad=True, check_batched_grad=True
    )
    expected = F.prelu(data_, slope.reshape(-1))
    torch.testing.assert_close(ops._PReLU.apply(data_, slope), expected, rtol=0, atol=0)


# -- bad files --------------------------------------------------------------------------------


@pytest.fixture
def small_ir(tmp_path) -> Path:
    return _mlp(tmp_path)


def refused(path: Path, match: str) -> None:
    with pytest.raises(UserInputError, match=match) as caught:
        IRNetwork(read_ir(path))
    assert "\n" not in str(caught.value)


def test_a_missing_bin_is_named(small_ir):
    small_ir.with_suffix(".bin").unlink()
    refused(small_ir, r"weights file graph\.bin is missing")


def test_a_truncated_bin_is_refused(small_ir):
    weights = small_ir.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[:100])
    refused(small_ir, r"runs past the end of graph\.bin .*truncated")


def test_a_const_past_the_end_of_the_file_is_refused(small_ir):
    set_first_attribute(small_ir, "offset", "999999999")
    refused(small_ir, "runs past the end")


def test_a_const_whose_size_does_not_fit_its_shape_is_refused(small_ir):
    set_first_attribute(small_ir, "size", "3")
    refused(small_ir, "declares 3 bytes")


def test_an_unknown_op_is_named_with_its_node(small_ir):
    small_ir.write_text(small_ir.read_text().replace('type="PReLU"', 'type="Frobnicate"', 1))
    refused(small_ir, r"op 'Frobnicate' \(node '.*'\) is not supported")


def test_an_unknown_element_type_is_named(small_ir):
    text = small_ir.read_text()
    small_ir.write_text(text.replace('element_type="f32" shape="8, 8"', 'element_type="nf4"', 1))
    refused(small_ir, "element type 'nf4'")


@pytest.mark.parametrize(
    "text, match",
    [
        ("<html><body>404</body></html>", "not an OpenVINO IR"),
        ("not xml at all", "not an OpenVINO IR"),
        ('<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaa">]><net>&a;</net>', "document type"),
    ],
)
def test_files_that_are_not_ir_are_refused(tmp_path, text, match):
    path = tmp_path / "model.xml"
    path.write_text(text)
    refused(path, match)


# -- the real MobileStyleGAN IR of the random-face wheel (installed by `make install`) --------


def _wheel_file(name: str) -> Path:
    from importlib.metadata import distribution

    return Path(str(distribution("random-face").locate_file(f"random_face/data/{name}")))


@pytest.fixture(scope="module")
def mobilestylegan():
    mapping = _wheel_file("MappingNetwork.xml")
    synthesis = _wheel_file("SynthesisNetwork.xml")
    return mapping, synthesis


@pytest.mark.slow
def test_mobilestylegan_matches_the_runtime_at_1024_px(mobilestylegan):
    """max |ours - runtime| / max |runtime| <= 1e-4: w = mapping(z) from the same z, and the
    full 1024-px image from the same w."""
    mapping, synthesis = mobilestylegan
    z = np.random.default_rng(7).standard_normal((1, 512)).astype(np.float32)
    (w_runtime,) = _runtime(mapping, z)
    (w_ours,) = _ours(mapping, z)
    assert float(np.abs(w_ours - w_runtime).max()) <= 1e-4 * float(np.abs(w_runtime).max())
    (image_runtime,) = _runtime(synthesis, w_runtime)
    (image_ours,) = _ours(synthesis, w_runtime)
    assert image_ours.shape == (1, 3, 1024, 1024)
    error = float(np.abs(image_ours - image_runtime).max())
    assert error <= 1e-4 * float(np.abs(image_runtime).max())
    # and a natural image, not a constant: values spread over most of [-1, 1]
    assert float(image_runtime.std()) > 0.2
