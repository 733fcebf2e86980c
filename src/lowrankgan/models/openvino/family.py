"""OpenVINO IR generators as lowrankgan `Model`s, and the built-in `mobilestylegan-ffhq`.

`--model path/to/generator.xml` loads any IR that maps one latent `(1, d)` to one image
`(1, C, H, W)` (C = 1 or 3), its weights in the `.bin` beside it. A mapping network is
optional: `MappingNetwork.xml` or `mapping.xml` in the same folder (`(1, z_dim)` ->
`(1, w_dim)`) adds the `z` space and truncation. The style affines (MatMuls reading the
latent) make the `wplus` space, one slot per affine in network order (`generator.py`).

`mobilestylegan-ffhq` is MobileStyleGAN (Apache-2.0 code; weights distilled from NVIDIA's
non-commercial StyleGAN2 FFHQ config-f 1024 model) from the `random-face` wheel, whose four
IR files are read, its Python package never imported.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import BuiltinSpec, LoadOptions, Model, Source, generic_presets
from lowrankgan.models.openvino.generator import (
    IRGenerator,
    StyleSlot,
    latent_input,
    output_shape,
    style_slots,
)
from lowrankgan.models.openvino.ir import IRGraph, read_ir
from lowrankgan.models.openvino.network import IRNetwork
from lowrankgan.models.presets import scaled_presets
from lowrankgan.models.wplus import (
    lift_w_directions,
    parse_layers,
    wplus_blocks,
    wplus_latent_from_code,
)

SPACES = ("w", "z", "wplus")
MAPPING_NAMES = ("MappingNetwork.xml", "mapping.xml")
#: Mapped seeds averaged for `w_avg` (seed 0; 4096 as NVIDIA's code estimates it).
W_AVG_SAMPLES = 4096


#: MobileStyleGAN's 23 style slots by the side of what each modulates, in network order.
MOBILESTYLEGAN_SLOT_SIDES = (4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64, 128, 128, 128,
                             256, 256, 256, 512, 512, 512, 512)  # fmt: skip
MOBILESTYLEGAN_NOTES = (
    "spaces: w (default, 512-d), z (through the mapping network), wplus (23 style slots)",
    "wplus slots (px): 0: 4, 1-3: 8, 4-6: 16, 7-9: 32, 10-12: 64, 13-15: 128, 16-18: 256, "
    "19-22: 512 (each resolution: upsampling, conv1, conv2; 22: to_img)",
    "StyleGAN2-1024's layers 4-7 (the paper's edit layers: 16 px conv1, 32 px, 64 px "
    "upsampling) are slots 5-10: --space wplus --layers 5-10",
    "licence: code Apache-2.0; weights distilled from NVIDIA's non-commercial FFHQ model",
)


@dataclass(frozen=True)
class IRBuiltin(BuiltinSpec):
    """A built-in IR generator: the synthesis XML inside its wheel (`weights_file`), the
    mapping XML beside it, and its preset family."""

    mapping_file: str = ""
    preset_family: str | None = None


BUILTINS: dict[str, IRBuiltin] = {
    "mobilestylegan-ffhq": IRBuiltin(
        name="mobilestylegan-ffhq",
        description=(
            "MobileStyleGAN, 1024x1024 FFHQ faces (OpenVINO IR; weights distilled from "
            "NVIDIA's non-commercial StyleGAN2 FFHQ; w, 512-d)"
        ),
        distribution="random-face",
        weights_file="random_face/data/SynthesisNetwork.xml",
        mapping_file="random_face/data/MappingNetwork.xml",
        preset_family="faces",
        notes=MOBILESTYLEGAN_NOTES,
    ),
}


def _mapping_beside(path: Path) -> Path | None:
    for name in MAPPING_NAMES:
        candidate = path.with_name(name)
        if candidate.is_file() and candidate.resolve() != path.resolve():
            return candidate
    return None


def check_generator(graph: IRGraph) -> tuple[int, tuple[int, int, int]]:
    """`(d, (C, H, W))` of a generator graph, or a one-line error saying why it is not one."""
    dim = latent_input(graph).outputs[0][1][1]  # type: ignore[index]
    shape = output_shape(graph)
    if shape is None or len(shape) != 4 or shape[1] not in (1, 3) or min(shape[2:]) < 4:
        raise UserInputError(
            f"{graph.source}: its output has shape {shape}, not an image (1, C, H, W) with "
            "C = 1 or 3"
        )
    return int(dim), (int(shape[1]), int(shape[2]), int(shape[3]))


@functools.lru_cache(maxsize=4)
def _w_avg(mapping_path: Path, stamp: float) -> torch.Tensor:
    """Mean of `W_AVG_SAMPLES` mapped seeds (seed 0), once per mapping file (and mtime)."""
    mapping = IRNetwork(read_ir(mapping_path))
    z_dim = latent_input(mapping.graph).outputs[0][1][1]  # type: ignore[index]
    z = torch.randn(W_AVG_SAMPLES, z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.cat([mapping(part) for part in z.split(512)]).mean(0)


def ir_model(
    synthesis_path: Path,
    mapping_path: Path | None,
    *,
    name: str,
    options: LoadOptions,
    description: str = "",
    preset_family: str | None = None,
) -> Model:
    """A `Model` of an IR generator in `options.space` (default `w`)."""
    space = options.space or "w"
    if space not in SPACES:
        raise UserInputError(f"unknown latent space {space!r} for an IR generator; choose w, z "
                             "or wplus")  # fmt: skip
    graph = read_ir(synthesis_path)
    w_dim, (channels, height, width) = check_generator(graph)
    mapping = None if mapping_path is None else IRNetwork(read_ir(mapping_path))
    if mapping is None and (space == "z" or options.truncation is not None):
        raise UserInputError(
            f"{synthesis_path.name} has no mapping network beside it ({' or '.join(MAPPING_NAMES)})"
            ": only the w and wplus spaces, without truncation"
        )
    psi = 1.0 if options.truncation is None else float(options.truncation)
    if not 0.0 < psi <= 1.0:
        raise UserInputError(f"truncation must be in (0, 1], got {psi}")
    if options.layers is not None and space != "wplus":
        raise UserInputError("--layers applies to --space wplus")
    slots = style_slots(graph)
    if space == "wplus" and not slots:
        raise UserInputError(f"{synthesis_path.name} has no style affines: no wplus space")
    chosen = parse_layers(options.layers, len(slots)) if space == "wplus" else ()
    blocks = wplus_blocks(len(slots), chosen) if space == "wplus" else 1
    w_avg = None
    if mapping_path is not None:
        w_avg = _w_avg(mapping_path.resolve(), mapping_path.stat().st_mtime)
    network = IRGenerator(
        IRNetwork(graph), mapping, space, truncation=psi, w_avg=w_avg, slots=slots,
        selected=chosen, w_dim=w_dim,
    ).eval()  # fmt: skip
    z_dim = None if mapping is None else latent_input(mapping.graph).outputs[0][1][1]  # type: ignore[index]
    presets = generic_presets(height, width)
    presets.update(scaled_presets(preset_family, width))
    latent_dim = {"w": w_dim, "z": z_dim or 0, "wplus": blocks * w_dim}[space]
    details: dict[str, object] = {
        "truncation": psi,
        "noise": "const",
        "preset_family": preset_family,
    }
    details["slots"] = [_slot_record(slot) for slot in slots]
    if space == "wplus":
        details.update({"layers": list(chosen), "num_ws": len(slots), "w_dim": w_dim})

    def sample(model: Model, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        dim = z_dim if mapping is not None else w_dim
        z = torch.randn(1, dim, generator=generator).to(model.device, model.dtype)
        if space == "z" or mapping is None:
            return z[0] if space != "wplus" else z[0].repeat(blocks)
        with torch.no_grad():
            w = model.network.map(z)[0]
        return w if space == "w" else w.repeat(blocks)

    return Model(
        name=name,
        network=network,
        latent_dim=latent_dim,
        resolution=(height, width),
        synthesis_fn=lambda net, latents, condition: net(latents),
        channels=channels,
        space=space,
        presets=presets,
        source=f"OpenVINO IR {synthesis_path}",
        description=description or f"OpenVINO IR generator {height}x{width}",
        latent_sampler=sample,
        details=details,
        # SeFa factorises the style affines (w, wplus); in z there is no fixed first layer
        # to read (the mapping starts with a pixel norm), so it is left to SeFa's search.
        latent_layer=(lambda net: net.style_weights()) if space != "z" and slots else None,
        # GANSpace: PCA of sampled w (a mapping's output); in z of the synthesis input.
        pca_features="synthesis" if space == "z" else "latent",
        code_reader=wplus_latent_from_code if space == "wplus" else None,
        direction_lifter=lift_w_directions if space == "wplus" else None,
    )


def _slot_record(slot: StyleSlot) -> dict[str, object]:
    return {"name": slot.name, "resolution": slot.resolution}


class OpenVINOFamily:
    """OpenVINO IR generators (`.xml` + `.bin`), and the built-in MobileStyleGAN."""

    name = "openvino"
    spaces = SPACES
    reads = "xml"
    expects = "an OpenVINO IR generator .xml (with its .bin)"

    def detect(self, source: Source) -> bool:
        return source.path.is_file() and source.path.suffix.lower() == ".xml"

    def load(self, source: Source, options: LoadOptions) -> Model:
        path = source.path
        return ir_model(path, _mapping_beside(path), name=source.text, options=options)

    def builtins(self) -> Mapping[str, BuiltinSpec]:
        return BUILTINS

    def load_builtin(self, name: str, options: LoadOptions) -> Model:
        spec = BUILTINS[name]
        synthesis = spec.installed_weights(options.checkpoint)
        mapping = synthesis.with_name(Path(spec.mapping_file).name)
        return ir_model(
            synthesis,
            mapping if mapping.is_file() else None,
            name=name,
            options=options,
            description=spec.description,
            preset_family=spec.preset_family,
        )
