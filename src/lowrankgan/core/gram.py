"""Region Gram matrices from a Jacobian field: `J_R^T J_R` for each region R.

One field `(d, C, h, w)` serves every region of an image; a Gram is a weighted product of
its columns, accumulated in float64. `sketch_gram` approximates the Grams of big latents from
a few forward and reverse products instead of the whole field.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lowrankgan.core import precision
from lowrankgan.core.jacobian import (
    chunk_size_for,
    jacobian_field,
    reused_heap,
    trim_heap,
    view_function,
)
from lowrankgan.core.precision import exact_math
from lowrankgan.models.base import Model

_GRAM_BLOCK_BYTES = 64 << 20
# Values per dot product of one float32 block product (see `gram_from_field`).
_FLOAT32_BLOCK_VALUES = 1024


def mask_weights(masks: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Region weights at the analysis size: `(m, H, W)` bool -> `(m, h, w)` float in [0, 1]."""
    weights = masks.to(torch.float32)
    if size is not None and tuple(weights.shape[-2:]) != tuple(size):
        weights = F.interpolate(weights.unsqueeze(1), size=size, mode="area").squeeze(1)
    return weights


@exact_math()
def gram_from_field(
    field: torch.Tensor, weights: torch.Tensor, *, products: str | None = None
) -> torch.Tensor:
    """Region Gram matrices from one Jacobian field.

    Args:
        field: `(d, C, h, w)` Jacobian field.
        weights: `(m, h, w)` non-negative pixel weights (a mask is 0/1).
        products: how blocks of columns are multiplied; default `precision.GRAM_PRODUCTS`.
            "float64": each block is converted to float64 first, so every product of two
            float32 values is exact and only the float64 sums round (about 1e-16 relative);
            at most `_GRAM_BLOCK_BYTES` of float64 at a time (the whole region only when it is
            smaller), never a float64 copy of the whole field.
            "float32": float32 block products (IEEE, `exact_math`) of at most
            `_FLOAT32_BLOCK_VALUES` values per dot product, each added to a float64 sum: the
            rounding inside a block is bounded by `n u sum|a_i b_i|` with n <= 1024 values
            and u = 2^-24 (6e-5 worst case, about sqrt(n) u = 2e-6 typically), the blocks'
            sum adds float64 rounding only. Measured on dcgan-faces (seeds 0-3; eyes,
            mouth and the rest of the face): up to 2.4e-7 relative (max abs difference /
            max abs entry) against a float64 einsum of the same field, eigenvalues within
            7.5e-9 of the largest (the float64 blocks: within 1.4e-14 of it). Far below
            what the float32 field itself carries, but other numbers, so not the default.
            Half the memory traffic, and much faster on GPUs with slow float64.

    Returns:
        `(m, d, d)` float64: `sum_p w_p sum_c J[:, c, p] J[:, c, p]^T` for each region.
    """
    products = products or precision.GRAM_PRODUCTS
    if products not in ("float64", "float32"):
        raise ValueError(f"products must be 'float64' or 'float32', got {products!r}")
    d, channels = field.shape[0], field.shape[1]
    flat = field.reshape(d, channels, -1)
    weights = weights.reshape(weights.shape[0], -1).to(field.device)
    grams = torch.zeros(weights.shape[0], d, d, dtype=torch.float64, device=field.device)
    if products == "float64":
        block = max(1, _GRAM_BLOCK_BYTES // (8 * d * channels))
        dtype = torch.float64
    else:
        block = max(1, _FLOAT32_BLOCK_VALUES // channels)
        dtype = torch.float32
    for i, w in enumerate(weights):
        pixels = torch.nonzero(w > 0).squeeze(1)
        scale = w[pixels].to(torch.float64).sqrt().to(dtype)
        for start in range(0, pixels.numel(), block):
            idx = pixels[start : start + block]
            cols = flat[:, :, idx].to(dtype) * scale[start : start + block]
            cols = cols.reshape(d, -1)
            grams[i] += cols @ cols.T
    return grams


@exact_math()
def jacobian_gram(
    model: Model,
    latent: torch.Tensor,
    masks: torch.Tensor,
    *,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Gram matrices of image regions at `latent`, from one Jacobian field.

    Args:
        masks: `(H, W)` or `(m, H, W)` bool at the model's output resolution.

    Returns:
        `(d, d)` or `(m, d, d)` float64: `J_R^T J_R` summed over the region's pixels and
        channels (in the analysis view when `size`/`fuse_channels` are given).
    """
    single = masks.dim() == 2
    masks = masks.unsqueeze(0) if single else masks
    field = jacobian_field(
        model,
        latent,
        size=size,
        fuse_channels=fuse_channels,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        progress=progress,
    )
    grams = gram_from_field(field, mask_weights(masks, field.shape[-2:]))
    return grams[0] if single else grams


@exact_math()
def sketch_gram(
    model: Model,
    latent: torch.Tensor,
    masks: torch.Tensor,
    sketch: int,
    *,
    size: tuple[int, int] | None = None,
    fuse_channels: bool = False,
    seed: int = 0,
    range_mask: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Randomised Gram matrices from `sketch` forward- and `sketch` reverse-mode products
    per mask (`sketch` more with `range_mask`).

    A randomised range finder for big latents: with an orthonormal test matrix
    `Omega (d, K)`, forward mode gives `Z = J Omega` (K products, shared by every mask),
    reverse mode gives `Y_m = J^T (w_m * Z) = M_m Omega` per mask (K products each), and the
    Nystrom approximation `M_m ~ Y_m (Omega^T Y_m)^+ Y_m^T` is formed in float64 (Tropp et
    al. 2017).

    `Omega` is Gaussian by default: exact for every mask whose Gram has rank at most K. With
    `range_mask = i` it is the orthonormalised `J^T (sqrt(w_i) G)` of K Gaussian cotangents
    `G` on mask i: K reverse products that sample the rows of that region's Jacobian, so the
    Nystrom step is one subspace iteration on them (Halko et al. 2011, 4.5). Then mask i's
    leading eigenvectors come out far more accurately (on the 1024-px FFHQ model, seed 0,
    K = 16: the eyes' top-5 space within 3 degrees against 20, docs/benchmarks.md); mask i's
    Gram is exact when its rank is at most K, the others' only on that range.

    Args:
        masks: `(H, W)` or `(m, H, W)` bool at the output resolution.
        sketch: K, the number of random directions (1..d).
        seed: seed of the test matrix.
        range_mask: the mask whose rows build the test matrix; None: a Gaussian one.

    Returns:
        `(d, d)` or `(m, d, d)` float64, PSD, of rank at most K.
    """
    single = masks.dim() == 2
    masks = masks.unsqueeze(0) if single else masks
    dim = model.latent_dim
    device, dtype = model.device, model.dtype
    point = latent.detach().reshape(1, dim).to(device=device, dtype=dtype)
    weights = mask_weights(masks, _view_size(model, size)).to(device=device)
    generator = torch.Generator().manual_seed(seed)
    pull = _ReversePasses(model, point, size, fuse_channels, chunk_size, memory_budget, progress)
    if range_mask is None:
        omega = torch.randn(dim, sketch, generator=generator, dtype=torch.float64)
    else:
        gaussian = torch.randn(sketch, *pull.shape, generator=generator, dtype=torch.float32)
        cotangents = weights[range_mask].sqrt().cpu() * gaussian
        omega = pull(cotangents.to(device=device, dtype=pull.dtype)).to(torch.float64).T
    omega = torch.linalg.qr(omega.cpu())[0]
    forward = jacobian_field(
        model,
        latent,
        size=size,
        fuse_channels=fuse_channels,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        progress=progress,
        directions=omega.T.to(device=device, dtype=dtype),
    )
    weights = weights.to(dtype=forward.dtype)
    cotangents = (weights[:, None, None] * forward[None]).reshape(-1, *forward.shape[1:])
    pulled = pull(cotangents)
    products = pulled.to(torch.float64).reshape(masks.shape[0], sketch, dim).transpose(1, 2)
    eps = torch.finfo(forward.dtype).eps
    grams = torch.stack([_nystrom(y, omega.to(y.device), eps) for y in products])
    return grams[0] if single else grams


def _view_size(model: Model, size: tuple[int, int] | None) -> tuple[int, int]:
    return tuple(size) if size is not None else tuple(model.resolution)  # type: ignore[return-value]


class _ReversePasses:
    """Reverse-mode products `J^T c` of the analysis view at one point, in chunks: the
    forward graph is built once and kept while the chunks run (state worth a class)."""

    def __init__(
        self,
        model: Model,
        point: torch.Tensor,
        size: tuple[int, int] | None,
        fuse_channels: bool,
        chunk_size: int | None,
        memory_budget: int | None,
        progress: bool,
    ) -> None:
        self.model, self.point, self.size, self.fuse = model, point, size, fuse_channels
        self.chunk_size, self.memory_budget, self.progress = chunk_size, memory_budget, progress
        self.dtype = point.dtype
        self._pull = None
        self.shape = (1 if fuse_channels else model.channels, *_view_size(model, size))

    def __call__(self, cotangents: torch.Tensor) -> torch.Tensor:
        """`(k, C', h, w)` cotangents -> `(k, d)` products in the model's precision."""
        # Reverse passes hold the forward graph and push cotangents, not tangents: sized from
        # a calibration of their own (before the graph below exists, which it includes).
        step = max(
            1,
            self.chunk_size
            or chunk_size_for(
                self.model,
                self.memory_budget,
                size=self.size,
                fuse_channels=self.fuse,
                mode="reverse",
                latent=self.point,
                count=cotangents.shape[0],
            ),
        )
        if self._pull is None:
            view = view_function(self.model, self.size, self.fuse)
            with torch.enable_grad():
                _, self._pull = torch.func.vjp(view, self.point)
        pull = self._pull

        def push_back(chunk: torch.Tensor) -> torch.Tensor:
            if chunk.shape[0] == 1:  # without vmap, the network keeps its fastest layouts
                return pull(chunk[0].to(self.dtype))[0]
            return torch.func.vmap(lambda c: pull(c.to(self.dtype))[0][0])(chunk)

        ranges = range(0, cotangents.shape[0], step)
        # as jacobian_field: each chunk starts from a trimmed heap on the CPU, chunks of one
        # (big networks) reuse one heap
        cpu = self.model.device.type == "cpu"
        single = cpu and step == 1
        trim = not self.chunk_size and cpu and len(ranges) > 1 and not single
        parts = []
        with reused_heap() if single else contextlib.nullcontext():
            for start in tqdm(ranges, desc="Sketch", disable=not self.progress or len(ranges) < 2):
                if trim:
                    trim_heap()
                parts.append(push_back(cotangents[start : start + step]).detach())
        return torch.cat(parts)


def _nystrom(products: torch.Tensor, omega: torch.Tensor, eps: float) -> torch.Tensor:
    """`M ~ Y (Omega^T Y)^+ Y^T` from `Y = M Omega` `(d, K)`: `(d, d)` float64 PSD.

    The pseudo-inverse drops the core's eigenvalues below `eps * K` of its largest, `eps`
    being the precision the products were computed in: below that they are rounding noise
    (a float32 network gives an indefinite core otherwise).
    """
    core = omega.T @ products
    values, vectors = torch.linalg.eigh(0.5 * (core + core.T))
    keep = values > eps * core.shape[0] * values.max().clamp(min=torch.finfo(values.dtype).tiny)
    basis = (products @ vectors[:, keep]) / values[keep].sqrt()
    return basis @ basis.T


def per_value_grams(field: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Gram matrices normalised per value: `(d, C, h, w)` field, `(m, H, W)` bool masks ->
    `(m, d, d)` float64, each region's Gram divided by its area times the values per pixel,
    so regions of different sizes (and analysis sizes) are on one scale."""
    weights = mask_weights(masks, tuple(field.shape[-2:]))
    grams = gram_from_field(field, weights)
    return grams / region_values(weights, field.shape[1], grams.device).view(-1, 1, 1)


def region_values(weights: torch.Tensor, channels: int, device: torch.device) -> torch.Tensor:
    """`(m,)` float64: how many values each weighted region holds (area x channels)."""
    return weights.sum(dim=(-2, -1)).to(torch.float64).to(device) * channels
