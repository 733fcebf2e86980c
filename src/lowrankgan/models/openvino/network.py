"""An OpenVINO IR graph run by torch: `IRNetwork(read_ir("generator.xml"))(w)`.

Float Consts become buffers (so `.to(device)` moves them; f16 weights are widened to
float32), integer Consts stay CPU tensors: they feed shape subgraphs, which compute on the
CPU whatever the device. Layers run in topological order, each output kept until the graph
is done with it (the graphs here are a few hundred MB of activations at 1024 px, so nothing
is freed early; see `docs/architecture.md` for where a memory-lean variant would go).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.models.openvino.ir import IRGraph, Layer
from lowrankgan.models.openvino.ops import OPS

#: Layers the executor handles itself rather than through `OPS`.
_STRUCTURAL = {"Parameter": {"opset1"}, "Const": {"opset1"}, "Result": {"opset1"}}


def check_supported(graph: IRGraph) -> None:
    """A one-line error naming the first layer whose op (or opset version) is not known."""
    for layer in graph.layers:
        known = OPS.get(layer.type)
        versions = _STRUCTURAL.get(layer.type) or (known[0] if known else None)
        if versions is None:
            raise UserInputError(
                f"{graph.source}: op {layer.type!r} (node {layer.name!r}) is not supported "
                "by lowrankgan's IR executor"
            )
        if layer.version and layer.version not in versions:
            raise UserInputError(
                f"{graph.source}: op {layer.type} version {layer.version} (node "
                f"{layer.name!r}) is not supported (known: {', '.join(sorted(versions))})"
            )


class IRNetwork(nn.Module):
    """Runs `graph`: `forward(*inputs)` takes its Parameters in file order and returns its
    Results' values (one tensor, or a tuple for several)."""

    def __init__(self, graph: IRGraph) -> None:
        super().__init__()
        check_supported(graph)
        self.graph = graph
        self._integers: dict[int, torch.Tensor] = {}
        for layer in graph.layers:
            if layer.type != "Const":
                continue
            value = torch.from_numpy(layer.value)  # type: ignore[arg-type]
            if value.is_floating_point():
                self.register_buffer(f"const{layer.id}", value.to(torch.float32))
            else:
                self._integers[layer.id] = value.to(torch.int64)

    @property
    def parameter_names(self) -> list[str]:
        return [layer.name for layer in self.graph.parameters]

    def constant(self, layer_id: int) -> torch.Tensor:
        """The value of Const layer `layer_id` (float32 on the network's device, or int64)."""
        return self._const(self.graph.by_id()[layer_id])

    def _const(self, layer: Layer) -> torch.Tensor:
        if layer.id in self._integers:
            return self._integers[layer.id]
        return getattr(self, f"const{layer.id}")

    def forward(
        self, *inputs: torch.Tensor, per_consumer: Mapping[int, torch.Tensor] | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """`per_consumer`: layer id -> the value that layer reads instead of a Parameter
        (one w per style affine makes W+ of a graph that takes one w)."""
        graph = self.graph
        parameter_ids = {layer.id for layer in graph.parameters}
        overrides = per_consumer or {}
        if len(inputs) != len(graph.parameters):
            raise UserInputError(
                f"{graph.source.name} takes {len(graph.parameters)} input(s), got {len(inputs)}"
            )
        values: dict[tuple[int, int], torch.Tensor] = {}
        for layer, value in zip(graph.parameters, inputs, strict=True):
            values[(layer.id, layer.outputs[0][0])] = value
        results: dict[int, torch.Tensor] = {}
        for layer in graph.layers:
            if layer.type == "Parameter":
                continue
            if layer.type == "Const":
                values[(layer.id, layer.outputs[0][0])] = self._const(layer)
                continue
            arguments = [
                overrides[layer.id]
                if edge.layer in parameter_ids and layer.id in overrides
                else values[(edge.layer, edge.port)]
                for edge in layer.inputs
            ]
            if layer.type == "Result":
                results[layer.id] = arguments[0]
                continue
            outputs = OPS[layer.type][1](layer, arguments)
            if len(outputs) != len(layer.outputs):
                raise UserInputError(
                    f"{layer.type} node {layer.name!r} made {len(outputs)} outputs, the IR "
                    f"declares {len(layer.outputs)}"
                )
            for (port, _), output in zip(layer.outputs, outputs, strict=True):
                values[(layer.id, port)] = output
        outputs = tuple(results[layer.id] for layer in graph.results)
        return outputs[0] if len(outputs) == 1 else outputs
