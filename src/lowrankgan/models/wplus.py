"""W+ latents with a layer selection, shared by the style-based families.

A W+ latent with selected layers L holds one `w` per selected layer plus one `w` shared by
the other layers (none when L is every layer): d = (|L| + 1) * w_dim. A W code `(w_dim,)`
repeats; a W+ code `(num_ws, w_dim)` maps exactly when its unselected layers agree; a W
direction lifts onto the selected layers (how the paper applies its edits). The family
records `num_ws`, `w_dim` and `layers` in `Model.details`.
"""

from __future__ import annotations

import torch

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import Model
from lowrankgan.ranges import parse_int_ranges


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
