"""Jacobian fields of a generator and the Gram matrices of image regions.

The Jacobian `J = dG(x)/dx` of a generator at a latent `x` has one column per latent direction
and one row per output value. LowRankGAN needs, for a region `R`, the Gram matrix
`J_R^T J_R` (d x d). We compute `J` in forward mode: d Jacobian-vector products, batched with
`torch.func.vmap` over chunks of the identity sized to a memory budget, instead of one
reverse pass per output value. The result is a *Jacobian field* `(d, C', h, w)`: the
derivative of every analysis pixel along every latent axis. One field serves every region of
the same image: each Gram is a weighted product of the field's columns, accumulated in
float64.

The analysis view of an image may be smaller than the output (area downsampling, the paper
uses 256 for 1024 images) and may fuse the colour channels into their mean; both are linear,
so they are applied to the tangents directly. Masks are downsampled by area too, so a pixel
half inside a region counts half.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lowrankgan.models.base import Model

DEFAULT_CPU_BUDGET = 1 << 30  # bytes
CPU_CHUNK_CAP = 128
# Tangents, primal activations and vmap temporaries: peak bytes per batched direction, as a
# multiple of the activation bytes of one forward pass. Measured about 1.1x on dcgan-faces
# (docs/benchmarks.md); 2 leaves room for networks with larger temporaries.
_ACTIVATION_FACTOR = 2


def analysis_view(
    images: torch.Tensor, size: tuple[int, int] | None = None, fuse_channels: bool = False
) -> torch.Tensor:
    """What the analysis sees of images: `(B, C, H, W)` -> `(B, C', h, w)`.

    Area downsampling to `size` (h, w) (no-op when `None` or equal), then the mean over
    channels when `fuse_channels` (C' = 1).
    """
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="area")
    if fuse_channels:
        images = images.mean(dim=1, keepdim=True)
    return images


def default_memory_budget(device: torch.device) -> int:
    """Half the free accelerator memory, or 1 GiB on the CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return DEFAULT_CPU_BUDGET


def chunk_size_for(model: Model, memory_budget: int | None = None) -> int:
    """How many latent directions to push forward at once within `memory_budget` bytes.

    The budget covers one chunk's activations and tangents, not the Jacobian field the chunks
    fill (`d x C' x h x w` values, which must exist anyway). On the CPU the chunk is also
    capped at `CPU_CHUNK_CAP`: larger batches only fall out of cache (measured 1.8x slower at
    512 than at 32-128 on a StyleGAN2, docs/benchmarks.md).
    """
    budget = memory_budget if memory_budget is not None else default_memory_budget(model.device)
    per_direction = _ACTIVATION_FACTOR * model.activation_bytes
    chunk = max(1, min(model.latent_dim, budget // max(per_direction, 1)))
    if model.device.type == "cpu":
        chunk = min(chunk, CPU_CHUNK_CAP)
    return int(chunk)


def jacobian_field(
    model: Model,
    latent: torch.Tensor,
    *,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool = False,
    directions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward-mode Jacobian of the analysis view at `latent`.

    Args:
        model: the generator.
        latent: `(d,)` point of the analysis space.
        size: analysis `(h, w)`; default the output resolution.
        fuse_channels: differentiate the channel mean instead of each channel.
        chunk_size: directions per batched forward pass; default from `memory_budget`.
        memory_budget: bytes for one chunk's activations; default `default_memory_budget`.
        progress: show a progress bar over chunks.
        directions: `(k, d)` tangents to push instead of the identity (k columns of J·V).

    Returns:
        `(k, C', h, w)` in the model's precision (at least float32) on its device: row i
        is `d view / d x` along direction i (the identity by default, so k = d).
    """
    device, dtype = model.device, model.dtype
    point = latent.detach().reshape(1, model.latent_dim).to(device=device, dtype=dtype)
    if directions is None:
        directions = torch.eye(model.latent_dim, device=device, dtype=dtype)
    else:
        directions = directions.to(device=device, dtype=dtype)
    count = directions.shape[0]

    def view(z: torch.Tensor) -> torch.Tensor:
        return analysis_view(model.synthesize(z), size, fuse_channels)[0]

    def push(tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(view, (point,), (tangent.unsqueeze(0),))[1]

    batched: Callable[[torch.Tensor], torch.Tensor] = torch.func.vmap(push)
    step = chunk_size or chunk_size_for(model, memory_budget)
    step = max(1, min(step, count))
    starts = range(0, count, step)
    field: torch.Tensor | None = None
    with torch.no_grad():
        if len(starts) == 1:
            block = batched(directions)
            return block.to(torch.promote_types(block.dtype, torch.float32))
        for start in tqdm(
            starts,
            desc="Jacobian",
            unit="chunk",
            disable=not progress,
            leave=False,
        ):
            block = batched(directions[start : start + step])
            if field is None:
                # The model's precision, never below float32 (half models accumulate badly).
                dtype = torch.promote_types(block.dtype, torch.float32)
                field = torch.empty((count, *block.shape[1:]), device=block.device, dtype=dtype)
            field[start : start + block.shape[0]] = block
    assert field is not None
    return field
