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
from lowrankgan.models.presets import PRESET_FAMILIES, guess_presets, scaled_presets
from lowrankgan.models.stylegan2.formats import (
    SG2Checkpoint,
    is_torch_file,
    read_stylegan2_checkpoint,
)
from lowrankgan.models.stylegan2.network import StyleGAN2Generator, build_stylegan2, style_affines
from lowrankgan.models.wplus import (
    lift_w_directions,
    parse_layers,
    wplus_blocks,
    wplus_latent_from_code,
)

SPACES = ("w", "z", "wplus")


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
    network = build_stylegan2(
        checkpoint.state,
        conv_clamp=checkpoint.conv_clamp,
        mapping_lr_multiplier=float(checkpoint.hyper.get("mapping_lr_multiplier", 0.01)),
    )
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
