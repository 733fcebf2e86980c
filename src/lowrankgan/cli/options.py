"""The options the commands share, and the parameter types of list-valued flags.

`--seeds`, `--layers` and `--strengths` are parsed by `lowrankgan.ranges` through the click
types `IntRanges` and `Numbers`, so a bad list is refused while the command line is read,
before any model is loaded, as one line `error: Invalid value for '--seeds': ...`.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from lowrankgan.core.baselines import DEFAULT_PCA_SAMPLES, DEFAULT_TOP_K
from lowrankgan.errors import UserInputError
from lowrankgan.models import Model
from lowrankgan.pipeline.settings import AUTHORS_SETTINGS, METHODS, AnalysisSettings
from lowrankgan.ranges import parse_int_ranges, parse_numbers

__all__ = [
    "LAYERS",
    "MAX_SEED",
    "SEEDS",
    "CHANGES",
    "STRENGTHS",
    "IntRanges",
    "Numbers",
    "analysis_options",
    "model_options",
    "output_folder",
    "parse_seeds",
    "settings_from_options",
    "settings_options",
]

#: Largest seed torch's generator accepts.
MAX_SEED = 2**64 - 1


class IntRanges(click.ParamType):
    """A flag like `--seeds 0-3,7`: a tuple of integers in `low..high` (None: unbounded),
    at most `most` of them (a name in `lowrankgan.limits` or a number)."""

    name = "ranges"

    def __init__(
        self,
        low: int | None = 0,
        high: int | None = None,
        most: str | int = "seeds",
        what: str = "values",
        example: str = "0-15 or 0,2,4",
    ) -> None:
        self.low, self.high, self.most = low, high, most
        self.what, self.example = what, example

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, (list, tuple)):  # a default given as values, or converted twice
            return tuple(int(v) for v in value)
        try:
            return tuple(
                parse_int_ranges(
                    str(value),
                    low=self.low,
                    high=self.high,
                    most=self.most,
                    what=self.what,
                    example=self.example,
                )
            )
        except UserInputError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "RANGES"


class Numbers(click.ParamType):
    """A flag like `--strengths -5,0,5`: a tuple of finite floats, at most `most` of them."""

    name = "numbers"

    def __init__(self, most: str | int = "strengths", what: str = "values") -> None:
        self.most, self.what = most, what

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[float, ...]:
        if isinstance(value, (list, tuple)):
            return tuple(float(v) for v in value)
        try:
            return tuple(parse_numbers(str(value), most=self.most, what=self.what))
        except UserInputError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NUMBERS"


#: `--seeds`: images by seed, e.g. `0-15` or `0,3,7`.
SEEDS = IntRanges(0, MAX_SEED, "seeds", "seeds", "0-15 or 0,3,7")
#: `--layers`: W+ layers; the model checks them against its own count of ws.
#: 1024 items at most: more than any network has ws (counted before a range is expanded).
LAYERS = IntRanges(0, None, 1024, "layers", "4-7 or 0,2,4")
#: `--strengths`: distances along a unit direction.
STRENGTHS = Numbers("strengths", "strengths")
CHANGES = Numbers("strengths", "changes")


def parse_seeds(text: str) -> list[int]:
    """`"0-3,7"` -> `[0, 1, 2, 3, 7]` (what `--seeds` reads)."""
    return parse_int_ranges(text, low=0, high=MAX_SEED, most="seeds", what="seeds")


def output_folder(_ctx: click.Context, _param: click.Parameter, value: str) -> Path:
    """`--out` as a Path: not empty (that would write into the current folder) and a name
    that is valid text, since it ends up in JSON, HTML and messages."""
    if not value.strip():
        raise UserInputError("--out must name a folder (got an empty string)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserInputError("--out must be a UTF-8 path (its bytes are not valid UTF-8)") from None
    return Path(value)


def _apply(func, options):  # noqa: ANN001, ANN202 - click decorators
    for option in reversed(options):
        func = option(func)
    return func


def model_options(func):  # noqa: ANN001, ANN201 - click decorator
    """`--model`, `--checkpoint`, `--class`, `--device`, `--space`, `--layers`,
    `--truncation`: what `load_model` takes."""
    return _apply(
        func,
        [
            click.option(
                "--model", "model_name", required=True, help="Name, checkpoint or file.py:factory."
            ),
            click.option("--checkpoint", default=None, help="Other weights for a named model."),
            click.option(
                "--class", "class_", default=None, help="Class index or name (conditional models)."
            ),
            click.option(
                "--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N, mps or auto."
            ),
            click.option(
                "--space",
                default=None,
                help="Analysis space: z; StyleGAN2 also w (its default) and wplus.",
            ),
            click.option(
                "--layers",
                type=LAYERS,
                default=None,
                help="W+ layers driven by the analysis, e.g. 4-7 (with --space wplus).",
            ),
            click.option(
                "--truncation",
                type=float,
                default=None,
                help="Truncation psi in (0, 1] (StyleGAN2; default the checkpoint's own).",
            ),
        ],
    )


def analysis_options(func):  # noqa: ANN001, ANN201 - click decorator
    """`--keep`, `--method` and the `settings_options`."""
    func = _apply(
        func,
        [
            click.option("--keep", default=None, help="Region to hold still (default: the rest)."),
            click.option(
                "--method", type=click.Choice(METHODS), default="lowrank", show_default=True
            ),
        ],
    )
    return settings_options(func)


def settings_options(func):  # noqa: ANN001, ANN201 - click decorator
    """The analysis settings; `settings_from_options` turns their values into
    `AnalysisSettings`."""
    return _apply(
        func,
        [
            click.option(
                "--top-k",
                type=int,
                default=DEFAULT_TOP_K,
                show_default=True,
                help="sefa/ganspace: candidates offered to the region selection.",
            ),
            click.option(
                "--ganspace-samples",
                type=int,
                default=DEFAULT_PCA_SAMPLES,
                show_default=True,
                help="ganspace: sampled images its PCA reads.",
            ),
            click.option(
                "--ganspace-layer",
                default=None,
                help="ganspace: module whose input is the early activation, or 'latent' "
                "(default: the model family's choice).",
            ),
            click.option(
                "--rank", type=int, default=None, help="Rank of the region's principal space."
            ),
            click.option(
                "--keep-rank",
                type=int,
                default=None,
                help="Rank of the kept region's principal space.",
            ),
            click.option("--region-energy", type=float, default=0.9, show_default=True),
            click.option("--keep-energy", type=float, default=0.999, show_default=True),
            click.option(
                "--rpca-solver",
                type=click.Choice(["ialm", "admm"]),
                default="ialm",
                show_default=True,
            ),
            click.option(
                "--rpca-lambda",
                type=float,
                default=None,
                help="Sparsity weight (default 4/sqrt(d)).",
            ),
            click.option("--no-rpca", is_flag=True, help="Use the Gram matrices as they are."),
            click.option(
                "--authors",
                is_flag=True,
                help="The paper's settings: ADMM, lambda 1/60, numerical rank.",
            ),
            click.option("--contrast-tau", type=float, default=1e-2, show_default=True),
            click.option(
                "--contrast-low-rank",
                is_flag=True,
                help="Contrast the low-rank parts L_R, L_B instead of the Gram matrices.",
            ),
            click.option(
                "--analysis-size",
                type=int,
                default=None,
                help="Analyse at this resolution (area downsampling).",
            ),
            click.option(
                "--fuse-channels",
                is_flag=True,
                help="Differentiate the mean of the colour channels.",
            ),
            click.option(
                "--sketch",
                type=int,
                default=None,
                help="Randomised Grams from K forward- and 3K reverse-mode products (default on "
                "a CPU for models over 256 px: 16).",
            ),
            click.option(
                "--exact",
                is_flag=True,
                help="Exact Grams from the whole Jacobian field, also on a CPU for big models.",
            ),
            click.option(
                "--memory-budget",
                type=float,
                default=None,
                help="MiB for one Jacobian chunk's activations (the field itself comes on top).",
            ),
        ],
    )


def settings_from_options(model: Model, **kw: object) -> AnalysisSettings:
    """`AnalysisSettings` from the values of `settings_options` (and `--method`,
    `--samples` where the command has them), checked against `model`."""
    for name in ("region_energy", "keep_energy", "contrast_tau", "rpca_lambda", "memory_budget"):
        value = kw[name]
        if value is not None and not math.isfinite(value):
            raise UserInputError(f"--{name.replace('_', '-')} must be a finite number")
    size = kw["analysis_size"]
    if size is not None and not 1 <= size <= max(model.resolution):
        raise UserInputError(f"--analysis-size must be in 1..{max(model.resolution)}")
    if kw["memory_budget"] is not None and kw["memory_budget"] <= 0:
        raise UserInputError("--memory-budget must be positive")
    values: dict[str, object] = {
        "method": kw.get("method", "lowrank"),
        "rank": kw["rank"],
        "keep_rank": kw["keep_rank"],
        "region_energy": kw["region_energy"],
        "keep_energy": kw["keep_energy"],
        "rpca_solver": kw["rpca_solver"],
        "rpca_lambda": kw["rpca_lambda"],
        "use_rpca": not kw["no_rpca"],
        "contrast_tau": kw["contrast_tau"],
        "contrast_on_low_rank": kw["contrast_low_rank"],
        "size": None if size is None else _scaled_size(model, size),
        "fuse_channels": kw["fuse_channels"],
        "sketch": kw["sketch"],
        "exact": kw["exact"],
        "samples": kw.get("samples", 1),
        "top_k": kw["top_k"],
        "pca_samples": kw["ganspace_samples"],
        "pca_layer": kw["ganspace_layer"],
        "memory_budget": None
        if kw["memory_budget"] is None
        else int(float(kw["memory_budget"]) * 2**20),
    }
    if kw["authors"]:
        values.update(AUTHORS_SETTINGS)
    return AnalysisSettings(**values)  # type: ignore[arg-type]


def _scaled_size(model: Model, size: int) -> tuple[int, int]:
    height, width = model.resolution
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))
