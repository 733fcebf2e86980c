"""An IR generator as one torch module: an optional mapping network, a synthesis network,
and the style slots that make its W+ space.

A style slot is a MatMul that reads the synthesis network's latent input directly (a style
affine, as StyleGAN2 and MobileStyleGAN have one per modulated convolution). Slots are put
in network order: by the resolution of the first convolution each one modulates, then by
that convolution's position in the graph. Other readers of the input (ShapeOf nodes of
shape subgraphs) read the first slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.models.openvino.ir import IRGraph, Layer
from lowrankgan.models.openvino.network import IRNetwork

_CONVOLUTIONS = {
    "Convolution",
    "GroupConvolution",
    "ConvolutionBackpropData",
    "GroupConvolutionBackpropData",
}


@dataclass(frozen=True)
class StyleSlot:
    """One style affine: its MatMul's layer id, the weight Const's name, and the larger side
    of the output of the first convolution it modulates (None if it reaches none; an
    upsampling slot of separable transposed convolutions reaches the (2, 1)-strided one
    first, so its side is already the upsampled one)."""

    layer: int
    name: str
    resolution: int | None


def latent_input(graph: IRGraph) -> Layer:
    """The one Parameter of a generator graph, `(1, d)` or `(-1, d)`."""
    if len(graph.parameters) != 1:
        raise UserInputError(
            f"{graph.source}: a generator IR takes one latent input, this one takes "
            f"{len(graph.parameters)}"
        )
    layer = graph.parameters[0]
    shape = layer.outputs[0][1]
    if shape is None or len(shape) != 2 or shape[1] <= 0:
        raise UserInputError(
            f"{graph.source}: its input {layer.name!r} has shape {shape}, not (1, d)"
        )
    return layer


def output_shape(graph: IRGraph) -> tuple[int, ...] | None:
    """The declared shape of the graph's one result."""
    if len(graph.results) != 1:
        raise UserInputError(f"{graph.source}: a generator IR has one output, this has "
                             f"{len(graph.results)}")  # fmt: skip
    edge = graph.results[0].inputs[0]
    source = graph.by_id()[edge.layer]
    return dict(source.outputs).get(edge.port)


def style_slots(graph: IRGraph) -> list[StyleSlot]:
    """The style affines of `graph` in network order (see the module docstring)."""
    by_id = graph.by_id()
    position = {layer.id: i for i, layer in enumerate(graph.layers)}
    users: dict[int, list[int]] = {layer.id: [] for layer in graph.layers}
    for layer in graph.layers:
        for edge in layer.inputs:
            users[edge.layer].append(layer.id)
    start = latent_input(graph)
    slots = []
    for user in users[start.id]:
        layer = by_id[user]
        if layer.type != "MatMul":
            continue
        weight = next((by_id[e.layer] for e in layer.inputs if e.layer != start.id), None)
        conv = _first_convolution(user, users, by_id, position)
        resolution = None
        if conv is not None:
            shape = conv.outputs[0][1]
            resolution = None if shape is None else max(int(shape[-2]), int(shape[-1]))
        slots.append((conv, StyleSlot(user, weight.name if weight else layer.name, resolution)))
    slots.sort(
        key=lambda pair: (
            pair[1].resolution is None,
            pair[1].resolution or 0,
            position[pair[0].id] if pair[0] is not None else 0,
        )
    )
    return [slot for _, slot in slots]


def _first_convolution(
    start: int, users: dict[int, list[int]], by_id: dict[int, Layer], position: dict[int, int]
) -> Layer | None:
    """The convolution nearest downstream of `start` (breadth first, earliest in the graph
    among equals)."""
    frontier, seen = [start], {start}
    while frontier:
        found = [by_id[i] for i in frontier if by_id[i].type in _CONVOLUTIONS and i != start]
        if found:
            return min(found, key=lambda layer: position[layer.id])
        following = []
        for current in frontier:
            for user in users[current]:
                if user not in seen:
                    seen.add(user)
                    following.append(user)
        frontier = following
    return None


class IRGenerator(nn.Module):
    """`forward(latents)`: `(n, d)` analysis latents -> `(n, C, H, W)` images.

    Spaces: `w` (the synthesis input), `z` (through the mapping network and truncation
    `w_avg + psi (w - w_avg)`), `wplus` (blocks: one w per selected slot, then one shared
    by the others when some are not selected).
    """

    def __init__(
        self,
        synthesis: IRNetwork,
        mapping: IRNetwork | None,
        space: str,
        *,
        truncation: float = 1.0,
        w_avg: torch.Tensor | None = None,
        slots: list[StyleSlot] | None = None,
        selected: tuple[int, ...] = (),
        w_dim: int = 0,
    ) -> None:
        super().__init__()
        self.synthesis, self.mapping, self.space = synthesis, mapping, space
        self.truncation = truncation
        self.register_buffer("w_avg", w_avg if w_avg is not None else torch.zeros(0))
        self.slots = slots or []
        self.selected, self.w_dim = selected, w_dim
        self._input = latent_input(synthesis.graph).id

    def style_weights(self) -> torch.Tensor:
        """`(m, d)` weights of the style affines in the analysis latent's coordinates (what
        SeFa factorises): stacked in w; in W+ each slot's block placed at its own block."""
        by_id = self.synthesis.graph.by_id()
        slot_of = {layer: i for i, layer in enumerate(self.selected)}
        blocks = len(self.selected) + (1 if len(self.selected) < len(self.slots) else 0)
        rows = []
        for index, slot in enumerate(self.slots):
            layer = by_id[slot.layer]
            weight_edge = next(e for e in layer.inputs if e.layer != self._input)
            weight = self.synthesis.constant(weight_edge.layer)
            flags = layer.attrs.get("transpose_b", "false").lower() == "true"
            weight = weight if flags else weight.T  # (out, w_dim)
            if self.space != "wplus":
                rows.append(weight)
                continue
            placed = weight.new_zeros(weight.shape[0], blocks * self.w_dim)
            start = slot_of.get(index, len(self.selected)) * self.w_dim
            placed[:, start : start + self.w_dim] = weight
            rows.append(placed)
        return torch.cat(rows)

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """`(n, z_dim)` -> `(n, w_dim)`, truncated towards `w_avg`."""
        if self.mapping is None:
            raise UserInputError("this generator has no mapping network")
        w = self.mapping(z)
        if self.truncation != 1.0:
            w = self.w_avg + self.truncation * (w - self.w_avg)
        return w

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if self.space == "z":
            return self.synthesis(self.map(latents))
        if self.space == "w":
            return self.synthesis(latents)
        return self._wplus(latents)

    def _wplus(self, latents: torch.Tensor) -> torch.Tensor:
        blocks = latents.reshape(latents.shape[0], -1, self.w_dim)
        slot_of = {layer: i for i, layer in enumerate(self.selected)}
        shared = len(self.selected)
        per_consumer = {
            slot.layer: blocks[:, slot_of.get(index, shared)]
            for index, slot in enumerate(self.slots)
        }
        first = blocks[:, 0]
        return self.synthesis(first, per_consumer=per_consumer)
