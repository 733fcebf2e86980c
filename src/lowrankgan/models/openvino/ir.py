"""OpenVINO IR (v10/v11) files as data: the XML's layers, ports and edges, and every Const
read from the `.bin` by offset, size and element type.

Nothing in the files is executed. The XML must be IR (a `<net>` with `<layers>` and
`<edges>`); document type declarations are refused outright, since IR never has them and
they are how XML entity bombs work. The `.bin` is bounded by `limit("checkpoint_bytes")`,
each Const by `limit("tensor_elements")`, and a Const whose bytes do not fit the declared
shape or run past the file is a one-line error naming the node.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lowrankgan.errors import UserInputError
from lowrankgan.limits import check_at_most

#: IR element types and the numpy types their bytes are read as (little endian).
ELEMENT_TYPES: dict[str, np.dtype] = {
    "f64": np.dtype("<f8"),
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"),
    "i16": np.dtype("<i2"),
    "i8": np.dtype("i1"),
    "u64": np.dtype("<u8"),
    "u32": np.dtype("<u4"),
    "u16": np.dtype("<u2"),
    "u8": np.dtype("u1"),
    "boolean": np.dtype("?"),
}

#: The XML of a 1024-px generator is about 0.5 MB; anything this large is not an IR.
MAX_XML_BYTES = 64 << 20


@dataclass(frozen=True)
class Edge:
    """Where one input port of a layer takes its value from: `(layer id, output port id)`."""

    layer: int
    port: int


@dataclass
class Layer:
    """One `<layer>`: its type and opset, its `<data>` attributes, the ids of its input
    ports in order, its output ports `(id, declared shape)` and, for a Const, its value."""

    id: int
    name: str
    type: str
    version: str
    attrs: dict[str, str]
    input_ports: list[int]
    outputs: list[tuple[int, tuple[int, ...] | None]]
    inputs: list[Edge] = field(default_factory=list)
    value: np.ndarray | None = None


@dataclass
class IRGraph:
    """A whole IR: its layers in topological order, its Parameters and Results by name."""

    name: str
    layers: list[Layer]
    parameters: list[Layer]
    results: list[Layer]
    source: Path

    def by_id(self) -> dict[int, Layer]:
        return {layer.id: layer for layer in self.layers}


def read_ir(xml_path: str | Path, bin_path: str | Path | None = None) -> IRGraph:
    """Parse `xml_path` and read its Consts from `bin_path` (default: the `.bin` beside it).

    Returns:
        the graph, layers topologically sorted (inputs before the layers that use them).
    """
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin") if bin_path is None else Path(bin_path)
    root = _parse_xml(xml_path)
    layers = [_layer(element, xml_path) for element in _children(root, "layers", xml_path)]
    by_id = {layer.id: layer for layer in layers}
    if len(by_id) != len(layers):
        raise UserInputError(f"{xml_path}: two layers share an id")
    _connect(root, by_id, xml_path)
    consts = [layer for layer in layers if layer.type == "Const"]
    if consts:
        _read_consts(consts, bin_path, xml_path)
    ordered = _topological(layers, xml_path)
    # The runtime orders a model's inputs and outputs by layer id, not by graph position.
    parameters = sorted((x for x in layers if x.type == "Parameter"), key=lambda x: x.id)
    results = sorted((x for x in layers if x.type == "Result"), key=lambda x: x.id)
    if not parameters or not results:
        raise UserInputError(f"{xml_path}: the IR has no Parameter or no Result layer")
    return IRGraph(root.get("name", xml_path.stem), ordered, parameters, results, xml_path)


def _parse_xml(path: Path) -> ElementTree.Element:
    if not path.is_file():
        raise UserInputError(f"IR file not found: {path}")
    size = path.stat().st_size
    check_at_most(size, "checkpoint_bytes", f"IR file {path.name}")
    if size > MAX_XML_BYTES:
        raise UserInputError(f"{path}: {size} bytes is too large for an IR's XML")
    text = path.read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise UserInputError(f"{path}: XML with a document type declaration is not an IR")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise UserInputError(f"{path}: not an OpenVINO IR (XML: {exc})") from None
    if root.tag != "net" or root.find("layers") is None or root.find("edges") is None:
        raise UserInputError(f"{path}: not an OpenVINO IR (no <net> with <layers> and <edges>)")
    return root


def _children(root: ElementTree.Element, tag: str, path: Path) -> list[ElementTree.Element]:
    parent = root.find(tag)
    return [] if parent is None else list(parent)


def _int(text: str | None, what: str, path: Path) -> int:
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserInputError(f"{path}: {what} is not an integer: {text!r}") from None


def _port_shape(port: ElementTree.Element, path: Path) -> tuple[int, ...] | None:
    dims = [d.text for d in port.findall("dim")]
    try:
        return tuple(int(d) for d in dims)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # a dynamic dimension ("?", "-1"): inferred when run


def _layer(element: ElementTree.Element, path: Path) -> Layer:
    if element.tag != "layer":
        raise UserInputError(f"{path}: unexpected <{element.tag}> among the layers")
    layer_id = _int(element.get("id"), "a layer id", path)
    data = element.find("data")
    inputs = element.find("input")
    outputs = element.find("output")
    return Layer(
        id=layer_id,
        name=element.get("name", str(layer_id)),
        type=element.get("type", ""),
        version=element.get("version", ""),
        attrs={} if data is None else dict(data.attrib),
        input_ports=[]
        if inputs is None
        else [_int(p.get("id"), "a port id", path) for p in inputs.findall("port")],
        outputs=[]
        if outputs is None
        else [
            (_int(p.get("id"), "a port id", path), _port_shape(p, path))
            for p in outputs.findall("port")
        ],
    )


def _connect(root: ElementTree.Element, by_id: dict[int, Layer], path: Path) -> None:
    """Fill each layer's `inputs` from `<edges>`, in the order of its input ports."""
    sources: dict[tuple[int, int], Edge] = {}
    for edge in _children(root, "edges", path):
        source = Edge(
            _int(edge.get("from-layer"), "an edge's from-layer", path),
            _int(edge.get("from-port"), "an edge's from-port", path),
        )
        target = (
            _int(edge.get("to-layer"), "an edge's to-layer", path),
            _int(edge.get("to-port"), "an edge's to-port", path),
        )
        if source.layer not in by_id or target[0] not in by_id:
            raise UserInputError(f"{path}: an edge names a layer that does not exist")
        if source.port not in {port for port, _ in by_id[source.layer].outputs}:
            raise UserInputError(
                f"{path}: an edge leaves port {source.port} of layer "
                f"{by_id[source.layer].name!r}, which has no such output"
            )
        if target in sources:
            raise UserInputError(f"{path}: two edges enter the same input port")
        sources[target] = source
    for layer in by_id.values():
        missing = [p for p in layer.input_ports if (layer.id, p) not in sources]
        if missing:
            raise UserInputError(
                f"{path}: input port {missing[0]} of layer {layer.name!r} ({layer.type}) is "
                "not connected"
            )
        layer.inputs = [sources[(layer.id, p)] for p in layer.input_ports]


def _topological(layers: list[Layer], path: Path) -> list[Layer]:
    """Kahn's order, stable in the file's order (which IR writers keep topological)."""
    by_id = {layer.id: layer for layer in layers}
    waiting = {layer.id: len({e.layer for e in layer.inputs}) for layer in layers}
    users: dict[int, list[int]] = {layer.id: [] for layer in layers}
    for layer in layers:
        for source in {e.layer for e in layer.inputs}:
            users[source].append(layer.id)
    ready = [layer.id for layer in layers if waiting[layer.id] == 0]
    ordered: list[Layer] = []
    while ready:
        current = ready.pop(0)
        ordered.append(by_id[current])
        for user in users[current]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if len(ordered) != len(layers):
        raise UserInputError(f"{path}: the IR's graph has a cycle")
    return ordered


def _shape_attr(text: str, what: str, path: Path) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserInputError(f"{path}: {what} has a bad shape {text!r}") from None
    if any(d < 0 for d in shape):
        raise UserInputError(f"{path}: {what} has a negative dimension in {text!r}")
    return shape


def _read_consts(consts: list[Layer], bin_path: Path, xml_path: Path) -> None:
    if not bin_path.is_file():
        raise UserInputError(f"{xml_path}: its weights file {bin_path.name} is missing")
    size = bin_path.stat().st_size
    check_at_most(size, "checkpoint_bytes", f"IR weights {bin_path.name}")
    blob = np.memmap(bin_path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    for layer in consts:
        what = f"Const {layer.name!r}"
        kind = layer.attrs.get("element_type", "")
        if kind not in ELEMENT_TYPES:
            raise UserInputError(
                f"{xml_path}: {what} has element type {kind!r}, which is not supported "
                f"(supported: {', '.join(ELEMENT_TYPES)})"
            )
        dtype = ELEMENT_TYPES[kind]
        shape = _shape_attr(layer.attrs.get("shape", ""), what, xml_path)
        count = math.prod(shape)
        check_at_most(count, "tensor_elements", what)
        offset = _int(layer.attrs.get("offset"), f"the offset of {what}", xml_path)
        length = _int(layer.attrs.get("size"), f"the size of {what}", xml_path)
        if offset < 0 or length < 0:
            raise UserInputError(f"{xml_path}: {what} has a negative offset or size")
        if length != count * dtype.itemsize:
            raise UserInputError(
                f"{xml_path}: {what} declares {length} bytes, its shape {list(shape)} of "
                f"{kind} needs {count * dtype.itemsize}"
            )
        if offset + length > size:
            raise UserInputError(
                f"{xml_path}: {what} runs past the end of {bin_path.name} (bytes "
                f"{offset}..{offset + length} of {size}: truncated weights?)"
            )
        raw = np.asarray(blob[offset : offset + length]).tobytes()
        layer.value = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
