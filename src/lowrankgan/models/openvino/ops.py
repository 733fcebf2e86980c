"""The OpenVINO operations an IR generator uses, each written from OpenVINO's operation
specification (docs.openvino.ai, "Operation Specifications") as torch operations.

Every op is a pure function `(layer, inputs) -> outputs` of tensors: no in-place writes, no
Python branches on tensor *values*, so the graph runs under `torch.func.jvp` and `vmap`.
Shape subgraphs (ShapeOf -> Gather -> Concat -> Reshape) compute on plain int64 CPU tensors
built from `x.shape`; under `vmap` that is the shape of one example, which is what the ops
consuming it expect, so they work for any batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lowrankgan.errors import UserInputError
from lowrankgan.models.openvino.ir import Layer

Op = Callable[[Layer, list[torch.Tensor]], list[torch.Tensor]]

#: op type -> (the opset versions whose semantics the function implements, the function)
OPS: dict[str, tuple[frozenset[str], Op]] = {}


def _register(name: str, *versions: str) -> Callable[[Op], Op]:
    def wrap(function: Op) -> Op:
        OPS[name] = (frozenset(versions), function)
        return function

    return wrap


class OpError(UserInputError):
    """An IR the executor cannot run: names the op and the node."""


def _fail(layer: Layer, message: str) -> OpError:
    return OpError(f"{layer.type} node {layer.name!r}: {message}")


def _ints(layer: Layer, key: str, default: Sequence[int] | None = None) -> list[int]:
    text = layer.attrs.get(key)
    if text is None:
        if default is None:
            raise _fail(layer, f"attribute {key!r} is missing")
        return list(default)
    text = text.strip()
    try:
        return [int(v) for v in text.split(",")] if text else []
    except ValueError:
        raise _fail(layer, f"attribute {key!r} is not a list of integers: {text!r}") from None


def _flag(layer: Layer, key: str, default: bool = False) -> bool:
    return layer.attrs.get(key, str(default)).strip().lower() in ("true", "1")


def _values(tensor: torch.Tensor) -> list[int]:
    """An int tensor of a shape subgraph (or a Const) as Python ints."""
    return [int(v) for v in tensor.reshape(-1).tolist()]


def _axis(layer: Layer, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise _fail(layer, f"axis {axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def _broadcasting(layer: Layer) -> None:
    mode = layer.attrs.get("auto_broadcast", "numpy").lower()
    if mode not in ("numpy", "none"):
        raise _fail(layer, f"auto_broadcast {mode!r} is not supported (numpy, none)")


def _same_device(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value if value.device == like.device else value.to(like.device)


# -- element-wise ------------------------------------------------------------------------------


def _binary(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Op:
    def op(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        _broadcasting(layer)
        a, b = inputs
        if layer.attrs.get("auto_broadcast", "numpy").lower() == "none" and a.shape != b.shape:
            raise _fail(layer, f"shapes {list(a.shape)} and {list(b.shape)} differ")
        if a.device != b.device:  # a shape value (CPU) meets data: the data's device wins
            a, b = (a, b.to(a.device)) if a.is_floating_point() else (a.to(b.device), b)
        return [function(a, b)]

    return op


_register("Add", "opset1")(_binary(torch.add))
_register("Multiply", "opset1")(_binary(torch.mul))
_register("Subtract", "opset1")(_binary(torch.sub))
_register("Divide", "opset1")(_binary(torch.div))
_register("Power", "opset1")(_binary(torch.pow))


@_register("Tanh", "opset1")
def tanh(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.tanh(inputs[0])]


@_register("PReLU", "opset1")
def prelu(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """`x if x >= 0 else slope * x`; a 1-D slope of C values applies along axis 1 (the
    channels), as the specification says, even where numpy broadcasting would not. Those
    two cases (and a scalar slope) run torch's fused prelu, 6x faster than a `where` at
    512 px; other slopes broadcast as numpy."""
    data, slope = inputs
    slope = _same_device(slope, data).to(data.dtype)
    channels = data.shape[1] if data.dim() >= 2 else 1
    if slope.dim() <= 1 and slope.numel() in (1, channels) and data.dim() >= 2:
        shape = (1, slope.numel()) + (1,) * (data.dim() - 2)
        return [_PReLU.apply(data, slope.reshape(shape))]
    return [torch.where(data >= 0, data, data * slope)]


class _PReLU(torch.autograd.Function):
    """Torch's fused prelu with derivatives that only scale the tangent: torch's own rules
    also reduce over the whole tensor for the slope's gradient, constant as it is (0.4 of
    a 2.1 s reverse product of the 1024-px MobileStyleGAN). Only the sign pattern is kept for
    them, a byte per value instead of the input's four."""

    generate_vmap_rule = True

    @staticmethod
    def forward(data: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        return F.prelu(data, slope.reshape(-1))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        data, slope = inputs
        ctx.set_materialize_grads(False)
        positive = data > 0
        ctx.save_for_backward(positive, slope, data if ctx.needs_input_grad[1] else None)
        ctx.save_for_forward(positive, slope, data)

    @staticmethod
    def jvp(ctx: Any, data_t: torch.Tensor | None, slope_t: torch.Tensor | None):
        positive, slope, data = ctx.saved_tensors
        out = None if data_t is None else _scale(data_t, positive, slope)
        if slope_t is not None:
            term = torch.where(positive, 0.0, data * slope_t)
            out = term if out is None else out + term
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None):
        if grad is None:
            return None, None
        positive, slope, data = ctx.saved_tensors
        grad_data = _scale(grad, positive, slope) if ctx.needs_input_grad[0] else None
        grad_slope = None
        if ctx.needs_input_grad[1]:
            term = torch.where(positive, 0.0, grad * data)
            dims = [d for d in range(term.dim()) if d != 1 or slope.numel() == 1]
            grad_slope = term.sum(dim=dims, keepdim=True).reshape(slope.shape)
        return grad_data, grad_slope


def _scale(values: torch.Tensor, positive: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """`values` where the input was positive, `slope * values` elsewhere (prelu's derivative,
    torch's convention at 0)."""
    return torch.where(positive, values, values * slope)


# -- matrix product and reductions ------------------------------------------------------------


@_register("MatMul", "opset1")
def matmul(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Batched matrix product over the last two axes; a 1-D operand is a row (first) or a
    column (second) vector whose added axis is removed again, and is never transposed."""
    a, b = inputs
    b = _same_device(b, a)
    a_vector, b_vector = a.dim() == 1, b.dim() == 1
    if a_vector:
        a = a.unsqueeze(0)
    elif _flag(layer, "transpose_a"):
        a = a.transpose(-1, -2)
    if b_vector:
        b = b.unsqueeze(1)
    elif _flag(layer, "transpose_b"):
        b = b.transpose(-1, -2)
    out = torch.matmul(a, b)
    if a_vector:
        out = out.squeeze(-2)
    if b_vector:
        out = out.squeeze(-1)
    return [out]


@_register("ReduceMean", "opset1")
def reduce_mean(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    data, axes = inputs
    dims = sorted({_axis(layer, a, data.dim()) for a in _values(axes)})
    if not dims:
        return [data]
    return [data.mean(dim=dims, keepdim=_flag(layer, "keep_dims"))]


# -- shapes -----------------------------------------------------------------------------------


@_register("ShapeOf", "opset1", "opset3")
def shape_of(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    kind = layer.attrs.get("output_type", "i64")
    if kind not in ("i64", "i32"):
        raise _fail(layer, f"output_type {kind!r} is not supported (i64, i32)")
    dtype = torch.int64 if kind == "i64" else torch.int32
    return [torch.tensor(list(inputs[0].shape), dtype=dtype)]


@_register("Gather", "opset1", "opset7", "opset8")
def gather(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """`data` indexed along `axis` by `indices` (any shape, negative from the end):
    `data.shape[:axis] + indices.shape + data.shape[axis + 1:]`."""
    data, indices, axis_tensor = inputs
    if int(layer.attrs.get("batch_dims", "0")) != 0:
        raise _fail(layer, "batch_dims other than 0 is not supported")
    axis = _axis(layer, _values(axis_tensor)[0], data.dim())
    size = data.shape[axis]
    # Indices come from Consts and shape subgraphs: checked as Python ints, a check that
    # tracing (torch.func.linearize) can follow, where a tensor comparison cannot.
    flat = [v + size if v < 0 else v for v in _values(indices)]
    if any(not 0 <= v < size for v in flat):
        raise _fail(layer, f"an index is out of range for size {size}")
    index = torch.tensor(flat, dtype=torch.int64, device=data.device)
    picked = torch.index_select(data, axis, index)
    shape = (*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :])
    return [picked.reshape(shape)]


@_register("Concat", "opset1")
def concat(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    axis = _axis(layer, int(layer.attrs.get("axis", "0")), inputs[0].dim())
    device = next((t.device for t in inputs if t.is_floating_point()), inputs[0].device)
    return [torch.cat([t.to(device) for t in inputs], dim=axis)]


@_register("Reshape", "opset1")
def reshape(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """`special_zero`: a 0 copies the input's dimension at that index; one -1 is inferred."""
    data, shape_tensor = inputs
    shape = _values(shape_tensor)
    if _flag(layer, "special_zero"):
        if any(v == 0 and i >= data.dim() for i, v in enumerate(shape)):
            raise _fail(layer, f"a 0 in {shape} has no input dimension to copy")
        shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    if sum(v == -1 for v in shape) > 1 or any(v < -1 for v in shape):
        raise _fail(layer, f"bad target shape {shape}")
    known = math.prod(v for v in shape if v != -1)
    if (-1 in shape and (known == 0 or data.numel() % known)) or (
        -1 not in shape and known != data.numel()
    ):
        raise _fail(layer, f"cannot reshape {list(data.shape)} to {shape}")
    return [data.reshape(shape)]


@_register("Unsqueeze", "opset1")
def unsqueeze(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    data, axes = inputs
    rank = data.dim() + len(_values(axes))
    for axis in sorted(_axis(layer, a, rank) for a in _values(axes)):
        data = data.unsqueeze(axis)
    return [data]


@_register("Squeeze", "opset1")
def squeeze(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Without axes, every dimension of size 1 goes; with axes, those (each must be 1)."""
    data = inputs[0]
    if len(inputs) == 1:
        dims = {i for i, size in enumerate(data.shape) if size == 1}
    else:
        dims = {_axis(layer, a, data.dim()) for a in _values(inputs[1])}
        if any(data.shape[d] != 1 for d in dims):
            raise _fail(layer, f"cannot squeeze axes {sorted(dims)} of {list(data.shape)}")
    return [data.reshape([s for i, s in enumerate(data.shape) if i not in dims])]


@_register("Broadcast", "opset1", "opset3")
def broadcast(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """numpy: to `target_shape`; bidirectional: to the broadcast of both shapes; explicit:
    data's axes placed at `axes_mapping` of the target."""
    data, target_tensor = inputs[0], inputs[1]
    target = _values(target_tensor)
    mode = layer.attrs.get("mode", "numpy").lower()
    if mode == "bidirectional":
        target = list(torch.broadcast_shapes(tuple(data.shape), tuple(target)))
    elif mode == "explicit":
        if len(inputs) < 3:
            raise _fail(layer, "explicit mode needs axes_mapping")
        mapping = _values(inputs[2])
        if len(mapping) != data.dim():
            raise _fail(layer, f"axes_mapping {mapping} does not match rank {data.dim()}")
        placed = [1] * len(target)
        for source, axis in enumerate(mapping):
            placed[axis] = data.shape[source]
        data = data.reshape(placed)
    elif mode != "numpy":
        raise _fail(layer, f"mode {mode!r} is not supported (numpy, bidirectional, explicit)")
    try:
        return [torch.broadcast_to(data, target)]
    except RuntimeError:
        raise _fail(layer, f"cannot broadcast {list(data.shape)} to {target}") from None


@_register("Tile", "opset1")
def tile(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Repeats per axis; fewer repeats than axes repeat the last axes, more add axes."""
    data, repeats_tensor = inputs
    repeats = _values(repeats_tensor)
    if any(r < 0 for r in repeats):
        raise _fail(layer, f"negative repeats {repeats}")
    repeats = [1] * (data.dim() - len(repeats)) + repeats
    return [data.repeat(repeats)]


@_register("VariadicSplit", "opset1")
def variadic_split(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    data, axis_tensor, lengths_tensor = inputs
    axis = _axis(layer, _values(axis_tensor)[0], data.dim())
    lengths = _values(lengths_tensor)
    size = data.shape[axis]
    if lengths.count(-1) > 1 or any(v < -1 for v in lengths):
        raise _fail(layer, f"bad split_lengths {lengths}")
    if -1 in lengths:
        lengths[lengths.index(-1)] = size - sum(v for v in lengths if v != -1)
    if sum(lengths) != size or any(v < 0 for v in lengths):
        raise _fail(layer, f"split_lengths {lengths} do not add up to {size}")
    return list(torch.split(data, lengths, dim=axis))


# -- convolutions -----------------------------------------------------------------------------


def _spatial(layer: Layer, data: torch.Tensor, kernel: Sequence[int]) -> tuple[list[int], ...]:
    rank = data.dim() - 2
    if rank not in (1, 2, 3) or len(kernel) != rank:
        raise _fail(layer, f"input of rank {data.dim()} with a {len(kernel)}-d kernel")
    strides = _ints(layer, "strides")
    dilations = _ints(layer, "dilations", [1] * rank)
    if len(strides) != rank or len(dilations) != rank:
        raise _fail(layer, "strides/dilations do not match the spatial rank")
    if any(v <= 0 for v in strides + dilations):
        raise _fail(layer, "strides and dilations must be positive")
    return strides, dilations


def _split_padding(total: int, lower: bool) -> tuple[int, int]:
    """SAME_LOWER puts the odd pixel at the beginning, SAME_UPPER at the end."""
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def _forward_pads(layer: Layer, data: torch.Tensor, kernel: Sequence[int]) -> tuple[list[int], ...]:
    strides, dilations = _spatial(layer, data, kernel)
    rank = len(kernel)
    mode = layer.attrs.get("auto_pad", "explicit").lower()
    if mode in ("explicit", "notset"):
        begin, end = _ints(layer, "pads_begin", [0] * rank), _ints(layer, "pads_end", [0] * rank)
    elif mode == "valid":
        begin, end = [0] * rank, [0] * rank
    elif mode in ("same_upper", "same_lower"):
        begin, end = [], []
        for size, k, s, d in zip(data.shape[2:], kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            b, e = _split_padding(total, mode == "same_lower")
            begin.append(b)
            end.append(e)
    else:
        raise _fail(layer, f"auto_pad {mode!r} is not supported")
    if len(begin) != rank or len(end) != rank or any(v < 0 for v in begin + end):
        raise _fail(layer, "pads do not match the spatial rank")
    return strides, dilations, begin, end


def _pad(data: torch.Tensor, begin: Sequence[int], end: Sequence[int]) -> torch.Tensor:
    if not any(begin) and not any(end):
        return data
    pairs = [v for b, e in zip(reversed(begin), reversed(end), strict=True) for v in (b, e)]
    return F.pad(data, pairs)


class _Convolution(torch.autograd.Function):
    """A (transposed) unpadded convolution whose derivatives are convolutions of the
    tangents alone. Torch's own forward-mode rule also convolves the input with the weight's
    tangent, which for a constant weight is a zero tensor it materialises: a JVP of the
    1024-px MobileStyleGAN (constant weights throughout) took 6.0 s with it, 4.8 s without.
    A weight with a tangent (computed from the latent) gets its term too."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        data: torch.Tensor,
        weight: torch.Tensor,
        stride: list[int],
        dilation: list[int],
        groups: int,
        transposed: bool,
    ) -> torch.Tensor:
        zeros = [0] * (data.dim() - 2)
        return torch.ops.aten.convolution(
            data, weight, None, stride, zeros, dilation, transposed, zeros, groups
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        data, weight, *options = inputs
        ctx.options = tuple(options)
        # tangents and gradients that do not exist stay None instead of zeros to convolve
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(data, weight)
        ctx.save_for_forward(data, weight)

    @staticmethod
    def jvp(ctx: Any, data_t: torch.Tensor | None, weight_t: torch.Tensor | None, *_: Any):
        data, weight = ctx.saved_tensors
        out = None if data_t is None else _Convolution.apply(data_t, weight, *ctx.options)
        if weight_t is not None:
            term = _Convolution.apply(data, weight_t, *ctx.options)
            out = term if out is None else out + term
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor | None):
        if grad is None:
            return None, None, None, None, None, None
        data, weight = ctx.saved_tensors
        stride, dilation, groups, transposed = ctx.options
        zeros = [0] * (data.dim() - 2)
        needs = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
        grad_data, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, data, weight, None, stride, zeros, dilation, transposed, zeros, groups, needs
        )
        return grad_data, grad_weight, None, None, None, None


def _conv(
    data: torch.Tensor,
    weight: torch.Tensor,
    stride: list[int],
    dilation: list[int],
    groups: int,
    transposed: bool = False,
) -> torch.Tensor:
    if data.dim() == 4:
        data, weight = _channels_last(data, weight)
    return _Convolution.apply(data, weight, list(stride), list(dilation), groups, transposed)


def _channels_last(data: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both in channels-last layout, which the elementwise ops after a convolution keep: on
    the 1024-px MobileStyleGAN on 2 cores a forward pass 1.96 -> 1.48 s, a linearised
    tangent 1.1 -> 0.7 s, a reverse product 1.8 -> 1.3 s (its depthwise 3x3 convolutions
    2.7x faster). A no-op on tensors already in it; both stay as they are inside `vmap`,
    which cannot relayout a batched tensor."""
    try:
        channels_last = torch.channels_last
        return data.contiguous(memory_format=channels_last), weight.contiguous(
            memory_format=channels_last
        )
    except RuntimeError:  # "NYI: Tensor.clone(memory_format) inside vmap" (torch 2.13)
        return data, weight


def _convolve(layer: Layer, data: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """`weight` `(C_out, C_in / groups, *kernel)`."""
    weight = _same_device(weight, data).to(data.dtype)
    if data.shape[1] != weight.shape[1] * groups:
        raise _fail(layer, f"{data.shape[1]} input channels for weights {list(weight.shape)}")
    strides, dilations, begin, end = _forward_pads(layer, data, weight.shape[2:])
    padded = _pad(data, begin, end)
    return _conv(padded, weight, strides, dilations, groups)


@_register("Convolution", "opset1")
def convolution(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    data, weight = inputs
    return [_convolve(layer, data, weight, 1)]


@_register("GroupConvolution", "opset1")
def group_convolution(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Weights `(G, C_out / G, C_in / G, *kernel)`."""
    data, weight = inputs
    groups = weight.shape[0]
    return [_convolve(layer, data, weight.reshape(-1, *weight.shape[2:]), groups)]


def _backprop(
    layer: Layer, data: torch.Tensor, weight: torch.Tensor, groups: int, output: torch.Tensor | None
) -> torch.Tensor:
    """Transposed convolution; `weight` `(C_in, C_out / groups, *kernel)`. The full output
    `(in - 1) s + d (k - 1) + 1`, plus `output_padding` zeros at the end, is cropped by the
    pads (explicit) or to `output_shape` (split by auto_pad)."""
    weight = _same_device(weight, data).to(data.dtype)
    if data.shape[1] != weight.shape[0]:
        raise _fail(layer, f"{data.shape[1]} input channels for weights {list(weight.shape)}")
    kernel = weight.shape[2:]
    strides, dilations = _spatial(layer, data, kernel)
    rank = len(kernel)
    extra = _ints(layer, "output_padding", [0] * rank)
    full = _conv(data, weight, strides, dilations, groups, transposed=True)
    if any(extra):
        full = _pad(full, [0] * rank, extra)
    sizes = list(full.shape[2:])
    mode = layer.attrs.get("auto_pad", "explicit").lower()
    if mode not in ("explicit", "notset", "valid", "same_upper", "same_lower"):
        raise _fail(layer, f"auto_pad {mode!r} is not supported")
    explicit = mode in ("explicit", "notset")
    begin = _ints(layer, "pads_begin", [0] * rank) if explicit else [0] * rank
    end = _ints(layer, "pads_end", [0] * rank) if explicit else [0] * rank
    if output is not None:
        wanted = _values(output)
        if len(wanted) != rank or any(w > f for w, f in zip(wanted, sizes, strict=True)):
            raise _fail(layer, f"output_shape {wanted} does not fit the full output {sizes}")
        totals = [f - w for f, w in zip(sizes, wanted, strict=True)]
        # SAME_UPPER puts the odd pixel at the beginning (the opposite of a forward
        # convolution), SAME_LOWER at the end; explicit keeps pads_begin and crops the rest
        # at the end. Without output_shape, SAME_* pads nothing, as the runtime does.
        if mode == "same_upper":
            begin = [t - t // 2 for t in totals]
        elif mode == "same_lower":
            begin = [t // 2 for t in totals]
        end = [t - b for t, b in zip(totals, begin, strict=True)]
    if any(b + e >= f for b, e, f in zip(begin, end, sizes, strict=True)) or min(begin + end) < 0:
        raise _fail(layer, f"pads {begin}/{end} leave no output of {sizes}")
    index = [slice(None), slice(None)] + [
        slice(b, f - e) for b, e, f in zip(begin, end, sizes, strict=True)
    ]
    return full[tuple(index)]


@_register("ConvolutionBackpropData", "opset1")
def convolution_backprop(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Weights `(C_in, C_out, *kernel)`; optional third input `output_shape` (spatial)."""
    output = inputs[2] if len(inputs) > 2 else None
    return [_backprop(layer, inputs[0], inputs[1], 1, output)]


@_register("GroupConvolutionBackpropData", "opset1")
def group_convolution_backprop(layer: Layer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Weights `(G, C_in / G, C_out / G, *kernel)`; optional `output_shape` (spatial)."""
    weight = inputs[1]
    groups = weight.shape[0]
    output = inputs[2] if len(inputs) > 2 else None
    return [_backprop(layer, inputs[0], weight.reshape(-1, *weight.shape[2:]), groups, output)]
