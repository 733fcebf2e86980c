"""The global direction finders local editing is compared against: SeFa and GANSpace.

Both find directions for the whole image, independent of any region or latent:
- SeFa (Shen and Zhou, CVPR 2021): the leading eigenvectors of `A^T A`, where `A` `(m, d)`
  holds the weights of the layers that read the latent directly (a linear layer, a
  transposed convolution on the latent seen as a 1x1 image, StyleGAN's style affines);
- GANSpace (Harkonen et al., NeurIPS 2020): PCA of early-layer activations over sampled
  latents, carried back to the latent by linear regression of the latents on the PCA
  coordinates; for spaces made by a mapping network (StyleGAN's W), PCA of the sampled
  latents themselves. The layer is the family's choice (`Model.pca_features`): DCGAN the
  first block's rectified features (the input of `convs.1`), BigGAN the first block's output
  (the input of `generator.layers.1`), StyleGAN2 in z the mapping's output; `layer` reads
  the input of any other module (a layer that is linear in the latent would make GANSpace a
  variant of SeFa).
`by_region_response` gives them the same region-based selection as the local methods: the
candidates sorted by how much they move the region at one image (`v^T M_R v`).
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from lowrankgan.core.subspace import canonical_signs, eig_desc, response
from lowrankgan.errors import UserInputError
from lowrankgan.models.base import Model

GLOBAL_METHODS = ("sefa", "ganspace")
#: Candidates a global method offers to the region selection.
DEFAULT_TOP_K = 10
#: Samples GANSpace's PCA reads.
DEFAULT_PCA_SAMPLES = 2000
#: GANSpace's samples are seeds PCA_SEED_BASE, PCA_SEED_BASE + 1, ... (apart from the seeds
#: users evaluate, so the PCA never saw the images it is judged on).
PCA_SEED_BASE = 3_000_000
_PCA_BATCH = 64


def _standard_latent_layers(model: Model) -> torch.Tensor:
    """`(m, d)` weights of the `nn.Linear` and `nn.ConvTranspose2d` layers whose input is the
    latent (or the latent followed by a condition), found by running the network once."""
    dim = model.latent_dim
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, dim, generator=generator).to(model.device, model.dtype)
    found: list[torch.Tensor] = []

    def check(module: nn.Module, args: tuple) -> None:
        flat = args[0].reshape(args[0].shape[0], -1) if args else None
        if flat is None or flat.shape[1] < dim or not torch.equal(flat[:, :dim], probe):
            return
        if isinstance(module, nn.Linear):
            found.append(module.weight[:, :dim])
        elif isinstance(module, nn.ConvTranspose2d) and args[0].shape[-2:] == (1, 1):
            # On a 1x1 input the output is the kernel itself, cropped by the padding.
            pad_h, pad_w = module.padding  # type: ignore[misc]
            kernel = module.weight[:dim]
            kernel = kernel[:, :, pad_h : kernel.shape[2] - pad_h, pad_w : kernel.shape[3] - pad_w]
            found.append(kernel.reshape(dim, -1).T)

    layers = [m for m in model.network.modules() if isinstance(m, nn.Linear | nn.ConvTranspose2d)]
    handles = [m.register_forward_pre_hook(check) for m in layers]
    try:
        with torch.no_grad():
            model.synthesize(probe)
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        raise UserInputError(
            f"sefa needs a first layer that is linear in the latent (a linear layer or a "
            f"transposed convolution reading it); none of {model.name}'s layers reads the "
            f"{model.space} latent directly"
        )
    return torch.cat(found)


def latent_layer_weights(model: Model) -> torch.Tensor:
    """`(m, d)` float64 weights of the layers that read the analysis latent directly."""
    if model.latent_layer is not None:
        weights = model.latent_layer(model.network)
    else:
        weights = _standard_latent_layers(model)
    return weights.detach().to(torch.float64).cpu()


def sefa_directions(model: Model, count: int = DEFAULT_TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa: `(directions (d, count), eigenvalues (count,))`, the leading eigenvectors of
    `A^T A` for the latent-facing weights `A`, strongest first, unit columns."""
    weights = latent_layer_weights(model)
    values, vectors = eig_desc(weights.T @ weights)
    count = min(count, model.latent_dim)
    return vectors[:, :count], values[:count]


class _Captured(Exception):
    """Raised by the capture hook: the rest of the forward pass is not needed."""


def _module(model: Model, name: str) -> nn.Module:
    modules = dict(model.network.named_modules())
    if name not in modules:
        hint = ", ".join(n for n in list(modules)[1:8] if n)
        raise UserInputError(
            f"{model.name} has no module {name!r} for GANSpace's features (modules: {hint}, ...)"
        )
    return modules[name]


def early_features(model: Model, latents: torch.Tensor, layer: str) -> torch.Tensor:
    """The input of module `layer` for each latent: `(B, d)` -> `(B, D)` float32."""
    captured: list[torch.Tensor] = []

    def capture(_module: nn.Module, args: tuple) -> None:
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None:
            raise UserInputError(f"module {layer!r} takes no tensor input")
        captured.append(first.reshape(first.shape[0], -1).float())
        raise _Captured

    handle = _module(model, layer).register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            model.synthesize(latents)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise UserInputError(f"module {layer!r} is not used when {model.name} synthesises")
    return captured[0]


def ganspace_directions(
    model: Model,
    count: int = DEFAULT_TOP_K,
    samples: int = DEFAULT_PCA_SAMPLES,
    layer: str | None = None,
    *,
    seed_base: int = PCA_SEED_BASE,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GANSpace: `(directions (d, count), explained variance (count,))`, strongest first.

    Args:
        model: the generator.
        count: components kept.
        samples: latents sampled (seeds `seed_base`, `seed_base + 1`, ...).
        layer: module whose input is the early activation to analyse, or `"latent"` for PCA
            of the latents; default the model family's choice (`Model.pca_features`).
    """
    layer = layer or model.pca_features
    if layer is None:
        raise UserInputError(
            f"ganspace needs an early layer of {model.name}: pass --ganspace-layer NAME "
            "(a module whose input is an early activation) or 'latent'"
        )
    if samples < 2:
        raise UserInputError(f"ganspace needs at least 2 samples, got {samples}")
    count = min(count, model.latent_dim, samples - 1)
    seeds = range(seed_base, seed_base + samples)
    latents = torch.stack([model.sample_latent(s) for s in seeds])
    centred_latents = (latents - latents.mean(dim=0)).to(torch.float64).cpu()
    if layer == "latent":
        features = centred_latents
    else:
        chunks = []
        batches = range(0, samples, _PCA_BATCH)
        for start in tqdm(batches, desc="GANSpace", unit="batch", disable=not progress):
            chunks.append(early_features(model, latents[start : start + _PCA_BATCH], layer).cpu())
        features = torch.cat(chunks)
        features = features - features.mean(dim=0)
    # PCA coordinates from the (samples x samples) Gram: features may be far wider than tall.
    gram = (features @ features.T).to(torch.float64)
    values, vectors = eig_desc(gram)
    coordinates = vectors[:, :count] * values[:count].clamp(min=0).sqrt()
    # Regress the latents on the coordinates; row j is component j's direction in the latent.
    solution = torch.linalg.lstsq(coordinates, centred_latents).solution
    directions = solution.T
    directions = directions / directions.norm(dim=0).clamp(min=torch.finfo(torch.float64).tiny)
    return canonical_signs(directions), values[:count] / (samples - 1)


def global_directions(
    model: Model,
    method: str,
    count: int = DEFAULT_TOP_K,
    samples: int = DEFAULT_PCA_SAMPLES,
    layer: str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """The `count` leading directions `(d, count)` float64 of global `method`."""
    if method == "sefa":
        return sefa_directions(model, count)[0]
    if method == "ganspace":
        return ganspace_directions(model, count, samples, layer, progress=progress)[0]
    raise UserInputError(f"unknown global method {method!r}; choose {', '.join(GLOBAL_METHODS)}")


def by_region_response(
    candidates: torch.Tensor, region_gram: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates `(d, k)` sorted by how much a unit step moves the region (`v^T M_R v`).

    Returns `(directions (d, k), responses (k,), order (k,))`: `order[i]` is the candidate
    index of direction i, so `order[0]` is the one a fair comparison edits with.
    """
    responses = response(candidates.to(region_gram.dtype), region_gram)
    order = torch.argsort(responses, descending=True)
    return candidates[:, order], responses[order], order
