"""StyleGAN2 as a lowrankgan `Model`: latent spaces, truncation and region presets.

Turns a checkpoint read by `stylegan2_formats` into a `Model` whose analysis space is
- `w` (default, as in the paper): one `w` broadcast to every layer; seeds are sampled as
  `z -> mapping -> w` with truncation `psi` towards `w_avg`;
- `z`: the mapping network is part of the function, truncation included;
- `wplus` with a layer selection L: one `w` per selected layer plus one `w` shared by the
  other layers (all of them when L is every layer), so d = (|L| + 1) * w_dim. A seed's latent
  repeats its `w`; a W+ code `(num_ws, w_dim)` maps exactly when its unselected layers agree;
  a W direction `(w_dim,)` (such as the authors' released ones) lifts onto the selected
  layers, which is how the paper applies its edits (layers 4-7 of FFHQ 1024).
Noise is the checkpoint's constant noise, so the function is deterministic (and
differentiable in forward mode). Presets for aligned faces are the LowRankGAN authors' boxes
(256x256 coordinates) plus ours, scaled to the model's resolution; church and car models get
sky/ground and body/ground presets.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import (
    LoadOptions,
    Model,
    NoBuiltins,
    Source,
    generic_presets,
)
from lowrankgan.models.checkpoints import load_state_file
from lowrankgan.models.stylegan2.formats import (
    SG2Checkpoint,
    is_torch_file,
    read_stylegan2_checkpoint,
)
from lowrankgan.models.stylegan2.network import StyleGAN2Generator, build_stylegan2, style_affines
from lowrankgan.ranges import parse_int_ranges
from lowrankgan.shapes import Box, Difference, Ellipse, Shape

SPACES = ("w", "z", "wplus")


def _centre_box(row: float, col: float, height: float, width: float) -> Box:
    return Box(
        round(col - width / 2),
        round(row - height / 2),
        round(col + width / 2),
        round(row + height / 2),
    )


# The authors' boxes (center_row, center_col, height, width) on 256x256 aligned faces.
FACE_PRESETS_256: dict[str, Shape] = {
    "eyes": _centre_box(120, 128, 20, 115),
    "left_eye": _centre_box(120, 95, 20, 38),
    "right_eye": _centre_box(120, 159, 20, 38),
    "nose": _centre_box(142, 131, 40, 46),
    "mouth": _centre_box(184, 127, 30, 70),
    "chin": _centre_box(217, 130, 42, 110),
    # ours, on the same aligned layout
    "forehead": _centre_box(78, 128, 36, 110),
    "hair": Box(40, 0, 216, 50),
    "face": Ellipse(128.0, 140.0, 72.0, 96.0),
    "background": Difference(Box(0, 0, 256, 256), Ellipse(128.0, 128.0, 100.0, 128.0)),
}
CHURCH_PRESETS_256: dict[str, Shape] = {"sky": Box(0, 0, 256, 64), "ground": Box(0, 208, 256, 256)}
# The car model is 512 wide with 512x384 content (rows 64..448); coordinates in 256 units.
CAR_PRESETS_256: dict[str, Shape] = {"body": Box(24, 96, 232, 184), "ground": Box(0, 184, 256, 224)}

PRESET_FAMILIES = {"faces": FACE_PRESETS_256, "church": CHURCH_PRESETS_256, "car": CAR_PRESETS_256}
_NAME_HINTS = {
    "faces": ("ffhq", "metfaces", "celeba", "face"),
    "church": ("church",),
    "car": ("car",),
}


def guess_presets(name: str) -> str | None:
    """Which preset family a checkpoint's file name suggests (`ffhq` -> faces ...)."""
    lowered = Path(name).name.lower()
    for family, hints in _NAME_HINTS.items():
        if any(hint in lowered for hint in hints):
            return family
    return None


def scaled_presets(family: str | None, resolution: int) -> dict[str, Shape]:
    if family is None:
        return {}
    scale = resolution / 256
    return {name: shape.scaled(scale, scale) for name, shape in PRESET_FAMILIES[family].items()}


def _w_synthesis(network: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None):
    assert isinstance(network, StyleGAN2Generator)
    ws = latents.unsqueeze(1).repeat(1, network.num_ws, 1)
    return network.synthesis(ws, noise_mode="const")


def _z_synthesis_for(psi: float, cutoff: int | None):
    def synthesize(network: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None):
        assert isinstance(network, StyleGAN2Generator)
        ws = network.mapping(latents, condition, psi, cutoff)
        return network.synthesis(ws, noise_mode="const")

    return synthesize


def _wplus_synthesis_for(layers: tuple[int, ...], num_ws: int):
    """`(B, (|L| + 1) * w_dim)` -> images: selected layers take their own block, the others
    the last block (absent when every layer is selected)."""
    slot = {layer: i for i, layer in enumerate(layers)}

    def synthesize(network: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None):
        assert isinstance(network, StyleGAN2Generator)
        blocks = latents.reshape(latents.shape[0], -1, network.config.w_dim)
        order = [slot[i] if i in slot else len(layers) for i in range(num_ws)]
        index = torch.tensor(order, device=latents.device)
        return network.synthesis(blocks.index_select(1, index), noise_mode="const")

    return synthesize


def wplus_blocks(num_ws: int, layers: tuple[int, ...]) -> int:
    """Number of w blocks of the W+ latent for a layer selection."""
    return len(layers) + (1 if len(layers) < num_ws else 0)


def parse_layers(layers: str | tuple[int, ...] | None, num_ws: int) -> tuple[int, ...]:
    """`"4-7"`, `"0,2,4"` or a tuple -> sorted distinct layer indices in 0..num_ws-1."""
    if layers is None:
        return tuple(range(num_ws))
    if isinstance(layers, str):
        try:
            # 1024 items at most: more than any network has ws, and counted before expanding.
            layers = tuple(
                parse_int_ranges(
                    layers, low=0, high=num_ws - 1, most=1024, what="layers", example="4-7 or 0,2,4"
                )
            )
        except UserInputError as exc:
            raise UserInputError(f"{exc} (this model has {num_ws} ws)") from None
    chosen = tuple(sorted(set(layers)))
    if not chosen or chosen[0] < 0 or chosen[-1] >= num_ws:
        raise UserInputError(f"layers must lie in 0..{num_ws - 1} (this model has {num_ws} ws)")
    return chosen


def stylegan2_model(
    checkpoint: SG2Checkpoint,
    *,
    name: str,
    space: str = "w",
    truncation: float | None = None,
    presets: str | None = None,
    layers: str | tuple[int, ...] | None = None,
) -> Model:
    """A `Model` of a StyleGAN2 checkpoint in latent space `space` (`"w"` or `"z"`).

    Args:
        truncation: psi; default the checkpoint's own default (1.0, or 0.5 for TF pickles).
        presets: `"faces"`, `"church"`, `"car"` or None to guess from the file name.
    """
    if space not in SPACES:
        raise UserInputError(f"unknown latent space {space!r} for StyleGAN2; choose w, z or wplus")
    psi = float(checkpoint.hyper.get("truncation_psi", 1.0) if truncation is None else truncation)
    if not 0.0 < psi <= 1.0:
        raise UserInputError(f"truncation must be in (0, 1], got {psi}")
    cutoff = checkpoint.hyper.get("truncation_cutoff")
    network = build_stylegan2(checkpoint.state, conv_clamp=checkpoint.conv_clamp)
    if checkpoint.hyper.get("w_avg_missing"):
        network.mapping.w_avg.copy_(_estimate_w_avg(network))
    config = network.config
    if layers is not None and space != "wplus":
        raise UserInputError("--layers applies to --space wplus")
    chosen = parse_layers(layers, config.num_ws) if space == "wplus" else ()
    blocks = wplus_blocks(config.num_ws, chosen) if space == "wplus" else 1
    family = presets or guess_presets(name)
    if family is not None and family not in PRESET_FAMILIES:
        raise UserInputError(
            f"unknown preset family {family!r}; choose {', '.join(PRESET_FAMILIES)}"
        )
    all_presets = generic_presets(config.resolution, config.resolution)
    all_presets.update(scaled_presets(family, config.resolution))
    class_names = tuple(str(i) for i in range(config.c_dim)) if config.c_dim else None

    def sample(model: Model, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(1, config.z_dim, generator=generator).to(model.device, model.dtype)
        if space == "z":
            return z[0]
        with torch.no_grad():
            ws = model.network.mapping(z, model.condition_vector(1), psi, None)
        return ws[0, 0].repeat(blocks)

    synthesis = {
        "w": _w_synthesis,
        "z": _z_synthesis_for(psi, cutoff),
        "wplus": _wplus_synthesis_for(chosen, config.num_ws),
    }[space]
    latent_dim = {"w": config.w_dim, "z": config.z_dim, "wplus": blocks * config.w_dim}[space]
    details: dict[str, object] = {"truncation": psi, "noise": "const", "preset_family": family}
    if space == "wplus":
        details.update({"layers": list(chosen), "num_ws": config.num_ws, "w_dim": config.w_dim})

    return Model(
        name=name,
        network=network,
        latent_dim=latent_dim,
        resolution=(config.resolution, config.resolution),
        synthesis_fn=synthesis,
        channels=config.img_channels,
        space=space,
        presets=all_presets,
        source=f"{checkpoint.format} {checkpoint.source}",
        description=f"StyleGAN2 {config.resolution}x{config.resolution} ({checkpoint.format})",
        class_names=class_names,
        condition=0 if class_names else None,
        latent_sampler=sample,
        details=details,
        latent_layer=_latent_layer_for(space, chosen),
        # W and W+ come out of the mapping network: GANSpace takes PCA of their samples; in
        # z it reads the mapping's output, the ws the synthesis network takes.
        pca_features="synthesis" if space == "z" else "latent",
        code_reader=wplus_latent_from_code if space == "wplus" else None,
        direction_lifter=lift_w_directions if space == "wplus" else None,
    )


def _latent_layer_for(space: str, chosen: tuple[int, ...]):
    """The weights that read the analysis latent directly: the mapping's first layer on z
    (after its normalisation), the style affines on w; on W+ each affine's weights sit in the
    columns of the block its layer reads."""

    def weights(network: nn.Module) -> torch.Tensor:
        assert isinstance(network, StyleGAN2Generator)
        if space == "z":
            fc0 = network.mapping.fc0
            return (fc0.weight * fc0.weight_gain)[:, : network.config.z_dim]
        affines = style_affines(network.synthesis)
        if space == "w":
            return torch.cat([a.weight * a.weight_gain for _, a in affines])
        w_dim = network.config.w_dim
        blocks = wplus_blocks(network.num_ws, chosen)
        slot = {layer: i for i, layer in enumerate(chosen)}
        rows = []
        for layer, affine in affines:
            placed = affine.weight.new_zeros(affine.weight.shape[0], blocks * w_dim)
            start = slot.get(layer, len(chosen)) * w_dim
            placed[:, start : start + w_dim] = affine.weight * affine.weight_gain
            rows.append(placed)
        return torch.cat(rows)

    return weights


def _estimate_w_avg(network: StyleGAN2Generator, samples: int = 4096) -> torch.Tensor:
    """Mean of mapped z over many samples, for checkpoints that do not store `w_avg`."""
    generator = torch.Generator().manual_seed(0)
    config = network.config
    z = torch.randn(samples, config.z_dim, generator=generator)
    c = None
    if config.c_dim:
        c = torch.zeros(samples, config.c_dim)
        c[:, 0] = 1.0
    with torch.no_grad():
        return network.mapping(z, c, 1.0, None)[:, 0].mean(0)


def wplus_latent_from_code(model: Model, code: torch.Tensor) -> torch.Tensor:
    """A W+ code `(num_ws, w_dim)` (or a W code `(w_dim,)`) -> the model's W+ latent `(d,)`."""
    num_ws, w_dim = int(model.details["num_ws"]), int(model.details["w_dim"])
    chosen = tuple(int(i) for i in model.details["layers"])  # type: ignore[union-attr]
    if code.numel() == w_dim:
        return code.reshape(w_dim).repeat(wplus_blocks(num_ws, chosen))
    if code.numel() != num_ws * w_dim:
        raise UserInputError(
            f"a W+ code has shape ({num_ws}, {w_dim}) or ({w_dim},); got {tuple(code.shape)}"
        )
    code = code.reshape(num_ws, w_dim)
    blocks = [code[i] for i in chosen]
    rest = [i for i in range(num_ws) if i not in chosen]
    if rest:
        shared = code[rest]
        if not torch.allclose(shared, shared[:1].expand_as(shared), rtol=1e-5, atol=1e-6):
            raise UserInputError(
                "the code's unselected layers differ; select every layer that differs with --layers"
            )
        blocks.append(shared[0])
    return torch.cat(blocks)


def lift_w_directions(model: Model, directions: torch.Tensor) -> torch.Tensor | None:
    """W directions `(w_dim, k)` -> W+ directions `(d, k)` on the selected layers (unit);
    None for directions of another size."""
    num_ws, w_dim = int(model.details["num_ws"]), int(model.details["w_dim"])
    if directions.shape[0] != w_dim:
        return None
    chosen = tuple(int(i) for i in model.details["layers"])  # type: ignore[union-attr]
    blocks = wplus_blocks(num_ws, chosen)
    lifted = directions.new_zeros(blocks * w_dim, directions.shape[1])
    for i in range(len(chosen)):
        lifted[i * w_dim : (i + 1) * w_dim] = directions
    return lifted / lifted.norm(dim=0)


def is_stylegan2_file(path: Path) -> bool:
    """A plain pickle (NVIDIA or TF StyleGAN2) or a torch file holding rosinality's `g_ema`."""
    if is_torch_file(path):
        return _mentions_g_ema(path)
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"


def _mentions_g_ema(path: Path) -> bool:
    """Whether a torch file holds rosinality's `g_ema`, without loading its tensors twice: the
    zip format's `data.pkl` names the dict keys in plain text (the legacy format is loaded)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) == 1:
                return b"g_ema" in archive.read(pickles[0])
    except zipfile.BadZipFile:
        pass
    return "g_ema" in load_state_file(path)


class StyleGAN2Family(NoBuiltins):
    """NVIDIA's PyTorch and TF pickles and rosinality's `g_ema` checkpoints."""

    name = "stylegan2"
    spaces = SPACES
    reads = "file"
    expects = "a StyleGAN2 .pkl (NVIDIA, PyTorch or TF) or a rosinality .pt"

    def detect(self, source: Source) -> bool:
        return source.path.is_file() and is_stylegan2_file(source.path)

    def load(self, source: Source, options: LoadOptions) -> Model:
        checkpoint = read_stylegan2_checkpoint(source.path)
        return stylegan2_model(
            checkpoint,
            name=source.text,
            space=options.space or "w",
            truncation=options.truncation,
            layers=options.layers,
        )
