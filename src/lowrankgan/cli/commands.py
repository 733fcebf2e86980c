"""The `lowrankgan` command line: models, fetch, analyze, edit, evaluate, demo.

Every bad input ends the same way: one line `error: ...` on stderr and exit code 2, with
nothing half-written left behind (outputs are staged and moved into place at the end).
"""

from __future__ import annotations

import errno
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np
import torch

from lowrankgan.cli.options import (
    CHANGES,
    MAX_SEED,
    SEEDS,
    STRENGTHS,
    analysis_options,
    model_options,
    output_folder,
    parse_seeds,
    settings_from_options,
    settings_options,
)
from lowrankgan.errors import UserInputError
from lowrankgan.io.artifacts import check_writable_dir, staged_output
from lowrankgan.io.latents import (
    direction_path,
    read_direction_array,
    read_latent_array,
    unit_directions,
)
from lowrankgan.models import Model, list_models, load_model
from lowrankgan.pipeline.analysis import (
    Analysis,
    analyze,
    check_analysis_fits,
    directions_analysis,
    lifted_analysis,
)
from lowrankgan.pipeline.editing import (
    DEFAULT_STEP,
    check_edit_work,
    default_one_shot,
    edit_analysis,
    edit_many,
)
from lowrankgan.pipeline.evaluation import DEFAULT_SAMPLES, DEFAULT_TRANSFER, EVAL_METHODS
from lowrankgan.version import __version__
from lowrankgan.zoo.catalogue import list_zoo
from lowrankgan.zoo.download import cache_location

#: `parse_seeds` and `MAX_SEED` live in `cli.options`; kept importable from here.
__all__ = ["EXIT_USAGE", "MAX_SEED", "cli", "main", "parse_seeds"]

EXIT_USAGE = 2
#: OS errors that are the machine's state, not a bug: reported in one line, exit 2.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EFBIG,
    errno.EIO,
    errno.EMFILE,
    errno.ENAMETOOLONG,
}


def load_latent_file(path: Path, model: Model) -> torch.Tensor:
    """A `.npy` latent of shape `(d,)` or `(1, d)`, finite; other codes the model's family
    reads (a W+ model: `(num_ws, w_dim)` and `(w_dim,)`)."""
    code = torch.from_numpy(read_latent_array(path))
    try:
        return model.latent_from_code(code)
    except UserInputError as exc:
        raise UserInputError(f"latent {path}: {exc}") from None


def _direction_vectors(model: Model, path: Path) -> np.ndarray:
    """Directions `(d, k)` from a file; directions of another space lift when the model's
    family lifts them (W directions onto a W+ model's selected layers)."""
    array = read_direction_array(path)
    size = array.shape[-1]
    if size != model.latent_dim and model.lifts_from(size):
        vectors = unit_directions(array, size, path)
        return model.lift_directions(torch.from_numpy(vectors)).numpy()
    return unit_directions(array, model.latent_dim, path)


def _model(
    model: str, checkpoint: str | None, class_: str | None, device: str, options: dict
) -> Model:
    truncation = options.get("truncation")
    if truncation is not None and not math.isfinite(truncation):
        raise UserInputError("--truncation must be a number in (0, 1]")
    return load_model(
        model,
        device=device,
        checkpoint=checkpoint,
        class_=class_,
        space=options.get("space"),
        truncation=truncation,
        layers=options.get("layers"),
    )


def _latent(model: Model, seed: int | None, latent: str | None) -> tuple[torch.Tensor, str]:
    if (seed is None) == (latent is None):
        raise UserInputError("give exactly one of --seed or --latent")
    if latent is not None:
        return load_latent_file(Path(latent), model).to(model.device), latent
    if not 0 <= seed <= MAX_SEED:
        raise UserInputError(f"--seed must be an integer in 0..{MAX_SEED}")
    return model.sample_latent(seed), f"seed {seed}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lowrankgan")
def cli() -> None:
    """Low-rank subspaces in GANs: find latent directions that edit one image region."""


@cli.command("models")
def models_command() -> None:
    """List the built-in models and where their weights come from."""
    rows = list_models()
    width = max(len(r.name) for r in rows)
    for row in rows:
        state = "installed" if row.available else "missing"
        click.echo(f"{row.name:<{width}}  {row.description}")
        click.echo(f"{'':<{width}}  weights: {row.weights} [{state}]")
        for note in row.notes:
            click.echo(f"{'':<{width}}  {note}")
    click.echo("Also: --model path/to/checkpoint (StyleGAN2 .pkl/.pt or DCGAN, detected),")
    click.echo("      --model path/to/generator.xml (OpenVINO IR, mapping network optional),")
    click.echo("      --model file.py:factory")
    click.echo("")
    click.echo("Zoo checkpoints (lowrankgan fetch NAME, then --model PATH):")
    entries = list_zoo()
    width = max(len(entry.name) for entry in entries)
    cache = cache_location()
    for entry in entries:
        size = f"{entry.size_bytes / 1e6:.0f} MB" if entry.size_bytes else "size ?"
        check = "sha256 pinned" if entry.verified else "unverified"
        where = cache / entry.folder if entry.folder else cache
        present = all((where / f.filename).is_file() for f in (entry, *entry.companions))
        cached = "cached" if present else "not downloaded"
        click.echo(
            f"{entry.name:<{width}}  {entry.resolution:>4}  {entry.dataset:<12} {entry.format:<10} "
            f"{size}, {check} [{cached}]"
        )
        click.echo(f"{'':<{width}}  {entry.url}")
    click.echo(
        "StyleGAN2 weights are NVIDIA research releases under non-commercial licences, "
        "BigGAN's are Apache-2.0; lowrankgan downloads them from their publishers and never "
        "redistributes them."
    )


@cli.command("fetch")
@click.argument("name")
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=None,
    help="Download into this folder instead of $LOWRANKGAN_CACHE or ~/.cache/lowrankgan.",
)
@click.option("--no-verify", is_flag=True, help="Ignore the pinned size and SHA-256.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fetch_command(name: str, cache: Path | None, no_verify: bool, quiet: bool) -> None:
    """Download a zoo checkpoint (resumable, verified) and print its path."""
    from lowrankgan.zoo.download import fetch_model

    if cache is not None:
        check_writable_dir(cache)
    click.echo(str(fetch_model(name, progress=not quiet, dest_dir=cache, verify=not no_verify)))


@cli.command("analyze")
@model_options
@click.option("--seed", type=int, default=None, help="Seed of the latent.")
@click.option("--latent", default=None, help="A .npy latent instead of a seed.")
@click.option("--region", required=True, help="Preset, box:x0,y0,x1,y1 or mask.png.")
@analysis_options
@click.option(
    "--samples",
    type=int,
    default=1,
    show_default=True,
    help="Average the Gram matrices over this many images (directions that transfer).",
)
@click.option("--out", required=True, callback=output_folder, help="Output folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def analyze_command(
    model_name, checkpoint, class_, device, seed, latent, region, out, quiet, keep, **kw
) -> None:  # noqa: ANN001
    """Find local-edit directions for a region; writes analysis.npz and analysis.json."""
    check_writable_dir(out)
    model = _model(model_name, checkpoint, class_, device, kw)
    z, _ = _latent(model, seed, latent)
    settings = settings_from_options(model, **kw)
    result = analyze(model, z, region, keep, settings, progress=not quiet)
    result.info["seed"] = seed
    with staged_output(out) as staging:
        result.save(staging)
    ranks = result.info["ranks"]
    click.echo(
        f"{ranks['directions']} directions (region rank {ranks['region']}, keep rank "
        f"{ranks['keep']}, null space {ranks['null_space']}) -> {out / 'analysis.npz'}"
    )


def _analysis_for_edit(  # noqa: ANN001
    model, z, region, keep, settings, analysis_path, quiet, one_shot, other_model=False
) -> Analysis:
    if analysis_path is not None:
        if region is not None:
            raise UserInputError("give either --region or --analysis, not both")
        result = Analysis.load(Path(analysis_path))
        if other_model:  # the user vouches that the latent spaces agree
            result = result.adopted_by(model)
        check_analysis_fits(result, model, analysis_path)
        if model.lifts_from(result.latent.shape[0]):
            return lifted_analysis(
                model, result, z, settings, need_keep_rank=not one_shot, source=analysis_path
            )
        if result.latent.shape[0] != model.latent_dim:
            raise UserInputError(
                f"analysis {analysis_path} is for a {result.latent.shape[0]}-d latent, the "
                f"model has {model.latent_dim}"
            )
        return result
    if region is None:
        raise UserInputError("give --region (to analyse first) or --analysis")
    return analyze(model, z, region, keep, settings, progress=not quiet)


@cli.command("edit")
@model_options
@click.option("--seed", type=int, default=None)
@click.option("--latent", default=None)
@click.option("--region", default=None, help="Analyse this region first.")
@click.option("--analysis", "analysis_path", default=None, help="An analysis.npz to use.")
@analysis_options
@click.option("--direction", "direction_index", type=int, default=0, show_default=True)
@click.option(
    "--direction-file",
    default=None,
    help="A .npy of (d,) or (k, d) directions to apply, or authors:ffhq1024/eyes_size (the "
    "LowRankGAN authors' released W directions: ffhq1024/{eyes_size,mouth_open,nose,"
    "expression}, metfaces1024/{eyes_size,eyeballs,mouth,nose}).",
)
@click.option(
    "--strengths",
    type=STRENGTHS,
    default=None,
    help="Distances along the unit direction, comma-separated [default: -5,-2.5,0,2.5,5].",
)
@click.option(
    "--change",
    "changes",
    type=CHANGES,
    default=None,
    help="Instead of --strengths: signed rms changes inside the region to reach "
    "(images in [-1, 1]), e.g. -0.1,0,0.1.",
)
@click.option(
    "--max-strength",
    type=float,
    default=None,
    help="How far the search for a --change may go in the latent space [default: 3 sqrt(d)].",
)
@click.option(
    "--one-shot/--path-following",
    "one_shot",
    default=None,
    help="A straight line, or path-following (an exact Jacobian field per step and image) "
    "[default: path-following; one-shot where analyses are sketched by default: models "
    "over 256 px on a CPU].",
)
@click.option("--step", type=float, default=DEFAULT_STEP, show_default=True)
@click.option(
    "--seeds", type=SEEDS, default=None, help="Apply the direction to these seeds, e.g. 0-15."
)
@click.option(
    "--other-model",
    is_flag=True,
    help="Accept an --analysis made on another model (e.g. one fine-tuned from it).",
)
@click.option("--out", required=True, callback=output_folder, help="Output folder.")
@click.option("--quiet", is_flag=True)
def edit_command(
    model_name,
    checkpoint,
    class_,
    device,
    seed,
    latent,
    region,
    analysis_path,
    direction_index,
    direction_file,
    strengths,
    changes,
    max_strength,
    one_shot,
    step,
    seeds,
    other_model,
    out,
    quiet,
    keep,
    **kw,
) -> None:  # noqa: ANN001
    """Edit images along a local direction to strengths or to changes inside the region;
    writes edits.npz, edits.json, edits.png and edits.gif."""
    from lowrankgan.report.outputs import EditWriter

    if strengths is not None and changes is not None:
        raise UserInputError("give either --strengths or --change, not both")
    if changes is None and strengths is None:
        strengths = DEFAULT_STRENGTHS
    if not (math.isfinite(step) and step > 0):
        raise UserInputError("--step must be a positive number")
    if max_strength is not None and not (math.isfinite(max_strength) and max_strength > 0):
        raise UserInputError("--max-strength must be a positive number")
    values = list(changes if changes is not None else strengths)
    seed_list = list(seeds) if seeds is not None else None
    images = len(seed_list) if seed_list is not None else 1
    asked = {"changes": values} if changes is not None else {"strengths": values}
    work = {"step": step, "max_strength": max_strength, "images": images}
    # Before the model is loaded, all that does not need its size (a change's default
    # search bound does); then all of it.
    # (an undecided mode is checked as the lighter one-shot edit until the model decides it)
    lenient = one_shot is not False or changes is not None
    check_edit_work(**asked, dim=1, one_shot_edit=lenient, **work)
    check_writable_dir(out)
    model = _model(model_name, checkpoint, class_, device, kw)
    settings = settings_from_options(model, **kw)
    if one_shot is None:
        one_shot = default_one_shot(model, settings)
        if one_shot and not quiet:
            click.echo(
                "editing one-shot: path-following needs an exact Jacobian field per step, "
                "minutes each for this model on a CPU (--path-following to insist)",
                err=True,
            )
    check_edit_work(**asked, dim=model.latent_dim, one_shot_edit=one_shot, **work)
    if analysis_path is not None and seed is None and latent is None:
        z = None
    else:
        z, _ = _latent(model, seed, latent)
    if direction_file is not None:
        if analysis_path is not None:
            raise UserInputError("give either --direction-file or --analysis, not both")
        if z is None:
            raise UserInputError("give --seed or --latent")
        vectors = _direction_vectors(model, direction_path(direction_file))
        result = directions_analysis(
            model,
            z,
            vectors,
            region,
            keep,
            settings,
            need_keep_rank=not one_shot,
            source=direction_file,
        )
        region = None  # nothing was analysed: no analysis files to write
    else:
        result = _analysis_for_edit(
            model, z, region, keep, settings, analysis_path, quiet, one_shot, other_model
        )
    result.direction(direction_index)  # validates the index before any work
    if not one_shot:
        try:
            result.keep_rank  # noqa: B018 - path-following needs it: fail before any work
        except (KeyError, TypeError, ValueError):
            raise UserInputError(
                f"{analysis_path}: no kept-region rank (analysis.json missing beside it?); "
                "path-following needs it, or use --one-shot"
            ) from None
    label = f"seed {seed}" if seed is not None else ("latent" if latent else "analysis latent")
    options = {
        "direction": direction_index,
        "one_shot_edit": one_shot,
        "step": step,
        "max_strength": max_strength,
        "progress": not quiet,
    }
    record = {
        "model": model.name,
        "space": model.space,
        "mode": "one-shot" if one_shot else "path-following",
        "direction": direction_index,
        "step": None if one_shot else step,
        "max_strength": max_strength,
    }
    with staged_output(out) as staging:
        if region is not None:
            result.info["seed"] = seed  # as `analyze` records it
            result.save(staging)
        writer = EditWriter(
            staging, model, values, result, images, changes=changes is not None, record=record
        )
        if seed_list is not None:
            # One seed at a time: its pictures are written and only its latents kept.
            for start_seed, edits in edit_many(model, result, seeds=seed_list, **asked, **options):
                writer.add(f"seed {start_seed}", edits, start_seed)
        else:
            edits = edit_analysis(model, result, latent=z, **asked, **options)
            writer.add(label, edits, seed)
        writer.close()
        summary = writer.summary()
    if summary["unreachable"]:
        click.echo(_unreachable_line(summary["unreachable"], len(writer.edits) * len(values)),
                   err=True)  # fmt: skip
    click.echo(f"{images * len(values)} edited images -> {out}")


DEFAULT_STRENGTHS = (-5.0, -2.5, 0.0, 2.5, 5.0)


def _unreachable_line(missed: list[dict], total: int) -> str:
    """One line for changes that could not be reached (details are in edits.json)."""
    first = missed[0]
    where = "" if first["seed"] is None else f" on seed {first['seed']}"
    return (
        f"warning: {len(missed)} of {total} changes not reached; e.g. {first['asked']:+g}"
        f"{where} stopped at {first['achieved']:+.4f} (strength {first['strength']:+.3g}), "
        "the largest reached; see edits.json"
    )


@cli.command("evaluate")
@model_options
@click.option(
    "--regions", required=True, help="Regions to edit, comma-separated (presets, box:..., PNGs)."
)
@click.option(
    "--methods",
    default=",".join(EVAL_METHODS),
    show_default=True,
    help="Methods to compare, comma-separated.",
)
@click.option("--seeds", type=SEEDS, default="0-49", show_default=True, help="Images, e.g. 0-49.")
@click.option(
    "--strengths",
    type=STRENGTHS,
    default="1,2,3,5",
    show_default=True,
    help="Distances along each unit direction, comma-separated (the table at equal strength).",
)
@click.option(
    "--changes",
    type=CHANGES,
    default=None,
    help="Also compare every method at these changes inside the region (rms, images in "
    "[-1, 1]), e.g. 0.05,0.1,0.15: the headline, at equal effect.",
)
@click.option(
    "--max-strength",
    type=float,
    default=None,
    help="How far the search for a change may go [default: 3 sqrt(d)].",
)
@click.option(
    "--transfer",
    type=int,
    default=DEFAULT_TRANSFER,
    show_default=True,
    help="Other images each direction is also applied to (0: none).",
)
@click.option(
    "--samples",
    type=int,
    default=DEFAULT_SAMPLES,
    show_default=True,
    help="multi: images its Gram matrices are averaged over.",
)
@click.option(
    "--multi-method",
    type=click.Choice(["contrast", "lowrank"]),
    default="contrast",
    show_default=True,
    help="multi: the method run on the averaged Gram matrices.",
)
@click.option("--keep", default=None, help="Region to hold still (default: the rest).")
@click.option(
    "--path",
    "path_following",
    is_flag=True,
    help="Path-following edits (one Jacobian per step and image) instead of one-shot.",
)
@click.option(
    "--step", type=float, default=DEFAULT_STEP, show_default=True, help="Path step (--path)."
)
@settings_options
@click.option("--out", required=True, callback=output_folder, help="Output folder.")
@click.option("--restart", is_flag=True, help="Discard finished cells made with other settings.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate_command(
    model_name,
    checkpoint,
    class_,
    device,
    regions,
    methods,
    seeds,
    strengths,
    changes,
    max_strength,
    transfer,
    samples,
    multi_method,
    keep,
    path_following,
    step,
    out,
    restart,
    quiet,
    **kw,
) -> None:  # noqa: ANN001
    """Compare local-edit methods on many images; writes results.csv, summary.md, index.html.

    Resumable: finished cells (method, region, seed) are kept in OUT/cells and not recomputed
    when the same command runs again.
    """
    from lowrankgan.pipeline.evaluation import parse_regions
    from lowrankgan.report.evaluation import evaluate

    method_list = tuple(m.strip() for m in methods.split(",") if m.strip())
    region_list = parse_regions(regions)
    check_writable_dir(out)
    model = _model(model_name, checkpoint, class_, device, kw)
    argv = (click.get_current_context().find_root().obj or {}).get("argv")
    report = evaluate(
        model,
        out,
        region_list,
        methods=method_list,
        seeds=seeds,
        strengths=strengths,
        transfer=transfer,
        samples=samples,
        multi_method=multi_method,
        keep=keep,
        path=path_following,
        step=step,
        settings=settings_from_options(model, **kw),
        changes=changes or (),
        max_strength=max_strength,
        restart=restart,
        progress=not quiet,
        command="lowrankgan " + shlex.join(argv) if argv else "",
    )
    click.echo(str(report))


@cli.command("demo")
@click.option("--out", default="outputs/demo", show_default=True, callback=output_folder)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seeds", type=SEEDS, default="0-2", show_default=True, help="Faces, e.g. 0-2.")
@click.option("--regions", default="eyes,mouth,nose", show_default=True)
@click.option("--quiet", is_flag=True)
def demo_command(out: Path, device: str, seeds: tuple[int, ...], regions: str, quiet: bool) -> None:
    """Local edits of the built-in face GAN, with an HTML report."""
    from lowrankgan.report.demo import run_demo

    check_writable_dir(out)
    region_list = [r.strip() for r in regions.split(",") if r.strip()]
    report = run_demo(
        out, device=device, seeds=list(seeds), regions=region_list, progress=not quiet
    )
    click.echo(str(report))


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: exit 0, or 2 with one line on stderr for bad input."""
    try:
        args = list(argv) if argv is not None else sys.argv[1:]
        cli.main(args=args, prog_name="lowrankgan", standalone_mode=False, obj={"argv": args})
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.UsageError as exc:
        _fail(exc.format_message())
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        _fail("aborted")
        return 130
    except UserInputError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        # Disk full, read-only or permissions: nothing half-written is left (outputs are
        # staged), so one line saying what and where is all the user needs.
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"cannot write output{where}: {exc.strerror or os.strerror(exc.errno)}")
        return EXIT_USAGE
    except MemoryError:
        _fail("out of memory; try a smaller --analysis-size, --memory-budget or fewer images")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    return 0


def _fail(message: str) -> None:
    line = " ".join(str(message).split())
    click.echo(f"error: {line}", err=True)


if __name__ == "__main__":
    sys.exit(main())
