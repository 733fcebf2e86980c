"""Benchmark of path-following before and after its rewrite, measured in one run.

"Before" is `follow_path` of commit `_BEFORE` (one Jacobian field per step, a corrector that
may give back the region's change); "after" is `lowrankgan.pipeline.path.follow_path` of the
working tree (a corrector that keeps the change, the field reused until the null space
turns). The old package is
extracted with `git archive` into a temporary directory, never into the working tree, and
runs in a child interpreter (`python bench/bench_path.py --child`, `PYTHONPATH` = that
directory) that answers one JSON line per case on stdout; the cases alternate which side runs
first, so the machine's noise falls on both.

For each (model, region, seed): `analyze(model, model.sample_latent(seed), region)` with
default settings (each side with its own package), direction 0, the analysis's keep mask,
region mask and keep rank. Measured: (a) path-following to strength 5 on both sides: wall
time, Jacobian fields computed (calls of `analysis_field` in the path's module, counted by a
wrapper) and the locality of the edit; (b) after only, change targets 0.10 and 0.15 (strength
needed, locality, time, fields), and before, the change reached at larger strengths (where
it saturates). It returns a Markdown section and writes no files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Only what both versions of the package have is imported here: the child runs this file
# against the old package. The path modules differ and are imported where they are used.
from lowrankgan import analyze, load_model
from lowrankgan.core.metrics import locality
from lowrankgan.pipeline.analysis import settings_of

_REPO = Path(__file__).resolve().parent.parent
_BEFORE = "711db41"
#: The module whose `follow_path` (and `analysis_field`) each side uses.
_PATH_MODULE = {"before": "lowrankgan.pipeline.editing", "after": "lowrankgan.pipeline.path"}


@dataclass(frozen=True)
class _Plan:
    """One model's cases; `saturation`: further strengths the old path is followed to."""

    model: str
    regions: tuple[str, ...]
    seeds: tuple[int, ...]
    saturation: tuple[float, ...]


# A full run of all seeds 0-3 and both regions of both models would take about an hour on
# the 2-core machine of docs/benchmarks.md: an omniart-eyes case alone is ~7 minutes (the
# old path computes 21 fields of ~10 s each, the analyses take ~30 s per side), and the old
# path to strength 12 there would add 49 more fields. So: dcgan-faces seeds 0-2, omniart-eyes
# seed 0 on one region, and the old path's saturation on dcgan-faces only.
_PLANS = (
    _Plan("dcgan-faces", ("eyes", "mouth"), (0, 1, 2), (8.0, 12.0)),
    _Plan("omniart-eyes", ("iris",), (0,), ()),
)
# Quick: dcgan-faces only, as one omniart-eyes case takes minutes even with the coarse step.
_PLANS_QUICK = (_Plan("dcgan-faces", ("eyes",), (0, 1), (8.0, 12.0)),)
_STRENGTH = 5.0
_STEP = 0.25
_STEP_QUICK = 2.5
_CHANGES = (0.10, 0.15)
#: Median outside/inside ratio at each change on `_GOAL_MODEL`, at most.
_GOALS = {0.10: 0.22, 0.15: 0.30}
_GOAL_MODEL = "dcgan-faces"
#: After's locality ratio at strength 5 may be this much (relative) above before's.
_LOCALITY_TOLERANCE = 0.10
#: After must be at least this many times cheaper (time and fields) than before.
_CHEAPER = 4.0


# -- shared by both sides (the same code runs against the old and the new package) ----------


@dataclass
class _Start:
    """One case's starting point and its analysis's direction and masks."""

    model: Any
    latent: torch.Tensor
    original: torch.Tensor  # (C, H, W)
    direction: torch.Tensor  # (d,) unit
    keep: torch.Tensor  # (H, W) bool
    region: torch.Tensor  # (H, W) bool
    keep_rank: int
    settings: Any
    analysis_seconds: float


def _start(model: Any, seed: int, region: str) -> _Start:
    latent = model.sample_latent(seed)
    began = time.perf_counter()
    analysis = analyze(model, latent, region)
    seconds = time.perf_counter() - began
    with torch.no_grad():
        original = model.synthesize(latent)[0]
    direction = torch.as_tensor(analysis.directions[:, 0].copy()).to(model.device, model.dtype)
    return _Start(
        model=model,
        latent=latent,
        original=original,
        direction=direction / direction.norm(),
        keep=torch.as_tensor(analysis.keep_mask),
        region=torch.as_tensor(analysis.region_mask),
        keep_rank=int(analysis.keep_rank),
        settings=settings_of(analysis),
        analysis_seconds=seconds,
    )


@contextlib.contextmanager
def _counting_fields(module: Any) -> Iterator[list[int]]:
    """Count the calls of `module.analysis_field` (one per Jacobian field) while inside."""
    original = module.analysis_field
    count = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    module.analysis_field = counted
    try:
        yield count
    finally:
        module.analysis_field = original


def _timed_path(module: Any, call: Callable[[], Any]) -> tuple[Any, float, int]:
    """`(result, seconds, fields)` of one path-following call."""
    with _counting_fields(module) as fields:
        began = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - began
    return result, seconds, fields[0]


def _localities(start: _Start, latents: torch.Tensor) -> list[dict[str, float]]:
    """Locality of each edited latent of `(n, d)` against the start, and how much of its
    displacement lies along the direction (cosine)."""
    with torch.no_grad():
        images = start.model.synthesize(latents.to(start.model.device, start.model.dtype))
    rows = []
    for latent, image in zip(latents, images, strict=True):
        found = locality(start.original, image, start.region, start.keep)
        moved = (latent.reshape(-1) - start.latent.reshape(-1)).double()
        cosine = float(moved @ start.direction.double() / moved.norm()) if moved.any() else 1.0
        rows.append({"rms_inside": found.rms_inside, "ratio": found.ratio, "cosine": cosine})
    return rows


def _common(start: _Start) -> dict[str, Any]:
    return {
        "keep_rank": start.keep_rank,
        "direction": start.direction.double().cpu().tolist(),
        "analysis_seconds": start.analysis_seconds,
    }


# -- before: the child interpreter, on the old package ---------------------------------------


def _before_case(model: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The old path-following on one case: to strength 5 (timed), then to `saturation`."""
    editing = importlib.import_module(_PATH_MODULE["before"])
    start = _start(model, spec["seed"], spec["region"])

    def follow(strengths: list[float]) -> torch.Tensor:
        return editing.follow_path(
            model,
            start.latent,
            start.direction,
            strengths,
            start.keep,
            start.keep_rank,
            start.settings,
            step=spec["step"],
            region=start.region,
        )

    latents, seconds, fields = _timed_path(editing, lambda: follow([spec["strength"]]))
    out = _common(start)
    out["path"] = {"seconds": seconds, "fields": fields, **_localities(start, latents)[0]}
    saturation = [spec["strength"]]
    if spec["saturation"]:
        saturation += spec["saturation"]
        latents = torch.cat([latents, follow(spec["saturation"])])
    out["saturation"] = [
        {"strength": s, **found}
        for s, found in zip(saturation, _localities(start, latents), strict=True)
    ]
    return out


def _child_main() -> int:
    """Answer one JSON line per JSON line of stdin (a case), with the old package."""
    import lowrankgan

    answer = sys.stdout
    sys.stdout = sys.stderr  # nothing the package prints may corrupt the answers
    models: dict[str, Any] = {}
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            if spec["model"] not in models:
                models[spec["model"]] = load_model(spec["model"])
            result = _before_case(models[spec["model"]], spec)
        except Exception as exc:  # reported in the table instead of ending the run
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        result["package"] = lowrankgan.__file__
        answer.write(json.dumps(result) + "\n")
        answer.flush()
    return 0


class _Before:
    """The old package, extracted from `_BEFORE`, and the child interpreter that runs it."""

    def __enter__(self) -> _Before:
        self._temp = tempfile.TemporaryDirectory(prefix="bench_path_before_")
        self.root = Path(self._temp.name)
        archive = _git("archive", _BEFORE, "src", text=False)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self.root, filter="data")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        return self

    def measure(self, spec: dict[str, Any]) -> dict[str, Any]:
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(json.dumps(spec) + "\n")
        self._child.stdin.flush()
        line = self._child.stdout.readline()
        if not line:
            raise RuntimeError(f"the 'before' child exited with status {self._child.wait()}")
        result = json.loads(line)
        package = Path(result.pop("package")).resolve()
        if self.root.resolve() not in package.parents:
            raise RuntimeError(f"the 'before' child imported {package}, not the old package")
        return result

    def __exit__(self, *exc: object) -> None:
        if self._child.stdin is not None:
            self._child.stdin.close()
        try:
            self._child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._temp.cleanup()


# -- after: this process, on the working tree ---------------------------------------------


def _after_case(model: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The new path-following on one case: to strength 5, then to the change targets."""
    path = importlib.import_module(_PATH_MODULE["after"])
    start = _start(model, spec["seed"], spec["region"])

    def follow(strengths: list[float] | None, **kwargs: Any) -> Any:
        return path.follow_path(
            model,
            start.latent,
            start.direction,
            strengths,
            start.keep,
            start.keep_rank,
            start.settings,
            step=spec["step"],
            region=start.region,
            **kwargs,
        )

    edits, seconds, fields = _timed_path(path, lambda: follow([spec["strength"]]))
    out = _common(start)
    out["path"] = {"seconds": seconds, "fields": fields, **_localities(start, edits.latents)[0]}
    edits, seconds, fields = _timed_path(path, lambda: follow(None, changes=list(_CHANGES)))
    targets = []
    for i, found in enumerate(_localities(start, edits.latents)):
        targets.append(
            {
                "change": _CHANGES[i],
                "reached": bool(edits.reached[i]),
                "strength": float(edits.strengths[i]),
                "achieved": float(edits.achieved[i]),
                **found,
            }
        )
    out["changes"] = {"seconds": seconds, "fields": fields, "targets": targets}
    return out


def _after_guarded(model: Any, spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return _after_case(model, spec)
    except Exception as exc:  # reported in the table instead of ending the run
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


# -- the run and its report -----------------------------------------------------------------


@dataclass
class _Case:
    model: str
    region: str
    seed: int
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.before and "error" not in self.after

    def both(self, key: str) -> tuple[float, float]:
        return self.before["path"][key], self.after["path"][key]

    def ratio(self, key: str) -> float:
        before, after = self.both(key)
        return after / before if before else math.nan

    def target(self, change: float) -> dict[str, Any]:
        return next(t for t in self.after["changes"]["targets"] if t["change"] == change)

    def agreement(self) -> float:
        """|cos| between the two sides' direction 0 (1: the same analysis)."""
        a = torch.tensor(self.before["direction"], dtype=torch.float64)
        b = torch.tensor(self.after["direction"], dtype=torch.float64)
        return abs(float(a @ b / (a.norm() * b.norm())))


def _git(*args: str, text: bool = True) -> Any:
    return subprocess.run(
        ["git", "-C", str(_REPO), *args], check=True, capture_output=True, text=text
    ).stdout


def _after_description() -> str:
    head = _git("rev-parse", "--short", "HEAD").strip()
    dirty = bool(_git("status", "--porcelain", "--", "src").strip())
    return f"the working tree (HEAD `{head}`{' plus uncommitted changes in src/' if dirty else ''})"


def _source_fingerprint() -> str:
    """sha256 (12 hex digits) of the working tree's package sources, to tell whether the code
    measured as "after" changed while the benchmark ran."""
    digest = hashlib.sha256()
    for path in sorted((_REPO / "src" / "lowrankgan").rglob("*.py")):
        digest.update(str(path.relative_to(_REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _fmt(value: float, spec: str = ".3f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _command() -> str:
    """This run's command line, with the thread variables that were set in front of it."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    threads = [
        f"{n}={os.environ[n]}" for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if n in os.environ
    ]
    return " ".join([*threads, shlex.join([python, *sys.argv])])


def _progress(case: _Case, seconds: float) -> str:
    """One line for stderr as each case ends: the run's numbers survive an interruption."""
    text = f"[bench path] {case.model} {case.region} seed {case.seed} ({seconds:.0f} s so far)"
    if not case.ok:
        return f"{text}: failed: {case.before.get('error') or case.after.get('error')}"
    numbers = ", ".join(
        f"{key} {case.before['path'][key]:.3g}/{case.after['path'][key]:.3g}"
        for key in ("seconds", "fields", "rms_inside", "ratio")
    )
    targets = ", ".join(
        f"change {t['change']:g}: {'reached' if t['reached'] else 'NOT reached'} at "
        f"{t['strength']:.2f}, ratio {t['ratio']:.3f}"
        for t in case.after["changes"]["targets"]
    )
    saturation = ", ".join(f"{r['rms_inside']:.3f}" for r in case.before["saturation"])
    return f"{text}: before/after {numbers}; {targets}; before's change {saturation}"


def _strength_table(cases: list[_Case]) -> list[str]:
    lines = [
        "| Seed | Region | Keep rank | Seconds before / after | Fields before / after "
        "| Rms inside before / after | Ratio before / after | Ratio after/before "
        "| Cosine to direction before / after |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        if not c.ok:
            error = c.before.get("error") or c.after.get("error")
            lines.append(f"| {c.seed} | {c.region} | failed: {error} |||||||")
            continue
        rank = c.after["keep_rank"]
        rank = f"{rank}" if rank == c.before["keep_rank"] else f"{c.before['keep_rank']}/{rank}"
        cells = [
            "{:.1f} / {:.1f}".format(*c.both("seconds")),
            "{} / {}".format(*c.both("fields")),
            "{:.3f} / {:.3f}".format(*c.both("rms_inside")),
            "{:.3f} / {:.3f}".format(*c.both("ratio")),
            f"{c.ratio('ratio'):.2f}",
            "{:.2f} / {:.2f}".format(*c.both("cosine")),
        ]
        lines.append(f"| {c.seed} | {c.region} | {rank} | " + " | ".join(cells) + " |")
    ok = [c for c in cases if c.ok]
    if ok:

        def pair(key: str, spec: str) -> str:
            return " / ".join(
                _fmt(_median([c.both(key)[side] for c in ok]), spec) for side in (0, 1)
            )

        cells = [
            pair("seconds", ".1f"),
            pair("fields", ".0f"),
            pair("rms_inside", ".3f"),
            pair("ratio", ".3f"),
            _fmt(_median([c.ratio("ratio") for c in ok]), ".2f"),
            pair("cosine", ".2f"),
        ]
        lines.append("| **median** | | | " + " | ".join(cells) + " |")
    return lines


def _target_cell(target: dict[str, Any]) -> str:
    if target["reached"]:
        return f"{target['strength']:.2f} | {target['ratio']:.3f}"
    return f"not reached (best {abs(target['achieved']):.3f} at {target['strength']:.2f}) | -"


def _change_table(cases: list[_Case], saturation: tuple[float, ...]) -> list[str]:
    strengths = (_STRENGTH, *saturation)
    header = "| Seed | Region | "
    header += " | ".join(f"{c:g}: strength | {c:g}: ratio" for c in _CHANGES)
    header += " | Seconds | Fields | "
    header += " | ".join(f"Before: change at {s:g}" for s in strengths) + " |"
    lines = [header, "|---:|---|" + "---:|" * (2 * len(_CHANGES) + 2 + len(strengths))]
    ok = [c for c in cases if c.ok]
    for c in ok:
        cells = [_target_cell(c.target(change)) for change in _CHANGES]
        cells += [f"{c.after['changes']['seconds']:.1f}", f"{c.after['changes']['fields']}"]
        cells += [f"{row['rms_inside']:.3f}" for row in c.before["saturation"]]
        lines.append(f"| {c.seed} | {c.region} | " + " | ".join(cells) + " |")
    if ok:
        cells = []
        for change in _CHANGES:
            reached = [c.target(change) for c in ok if c.target(change)["reached"]]
            cells.append(
                f"{_fmt(_median([t['strength'] for t in reached]), '.2f')} "
                f"| {_fmt(_median([t['ratio'] for t in reached]))}"
            )
        cells.append(_fmt(_median([c.after["changes"]["seconds"] for c in ok]), ".1f"))
        cells.append(_fmt(_median([c.after["changes"]["fields"] for c in ok]), ".0f"))
        for i in range(len(strengths)):
            cells.append(_fmt(_median([c.before["saturation"][i]["rms_inside"] for c in ok])))
        lines.append("| **median** | | " + " | ".join(cells) + " |")
    return lines


def _goal_rows(cases: list[_Case]) -> list[str]:
    ok = [c for c in cases if c.ok]
    time_ratio = _median([c.ratio("seconds") for c in ok])
    field_ratio = _median([c.ratio("fields") for c in ok])
    locality_ratio = _median([c.ratio("ratio") for c in ok])
    cheaper = 1 / _CHEAPER
    rows = [
        "| Measure (median over cases) | Value | Goal | Status |",
        "|---|---:|---:|---|",
        f"| Time to strength {_STRENGTH:g}, after/before ({len(ok)} cases) "
        f"| {_fmt(time_ratio, '.2f')} | <= {cheaper:.2f} | {_met(time_ratio <= cheaper)} |",
        f"| Jacobian fields to strength {_STRENGTH:g}, after/before ({len(ok)} cases) "
        f"| {_fmt(field_ratio, '.2f')} | <= {cheaper:.2f} | {_met(field_ratio <= cheaper)} |",
        f"| Locality ratio at strength {_STRENGTH:g}, after/before ({len(ok)} cases) "
        f"| {_fmt(locality_ratio, '.2f')} | <= {1 + _LOCALITY_TOLERANCE:.2f} "
        f"| {_met(locality_ratio <= 1 + _LOCALITY_TOLERANCE)} |",
    ]
    goal_cases = [c for c in ok if c.model == _GOAL_MODEL]
    for change, goal in _GOALS.items():
        targets = [c.target(change) for c in goal_cases]
        reached = sum(t["reached"] for t in targets)
        # An unreached change counts as worse than any ratio: the median cannot hide misses.
        value = _median([t["ratio"] if t["reached"] else math.inf for t in targets])
        rows.append(
            f"| `{_GOAL_MODEL}` ratio at change {change:g}, after ({reached}/{len(targets)} "
            f"cases reached; a miss counts as infinite) | {_fmt(value)} | <= {goal:g} "
            f"| {_met(bool(targets) and value <= goal)} |"
        )
    return rows


def _agreement_note(cases: list[_Case]) -> str:
    ok = [c for c in cases if c.ok]
    if not ok:
        return ""
    worst = min(c.agreement() for c in ok)
    ranks = sum(c.before["keep_rank"] == c.after["keep_rank"] for c in ok)
    targets = [t for c in ok for t in c.after["changes"]["targets"]]
    gap = max(abs(abs(t["achieved"]) - t["rms_inside"]) for t in targets)
    return (
        f"Both sides analysed alike: equal keep ranks in {ranks}/{len(ok)} cases, |cosine| "
        f"between the two sides' direction 0 at least {worst:.6f}. The change `Edits.achieved` "
        f"reports agrees with `locality`'s rms inside of its latents within {gap:.1e}."
    )


def run(quick: bool = False) -> str:
    """Run the benchmark and return a Markdown section (`quick`: dcgan-faces seeds 0-1 on
    eyes only, path step 2.5 instead of 0.25)."""
    plans = _PLANS_QUICK if quick else _PLANS
    step = _STEP_QUICK if quick else _STEP
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    before_commit = _git("rev-parse", f"{_BEFORE}^{{commit}}").strip()
    after = _after_description()
    # Import the new code now: what runs is what was there when the benchmark started.
    importlib.import_module(_PATH_MODULE["after"])
    fingerprint = _source_fingerprint()
    cases: list[_Case] = []
    began = time.perf_counter()
    with _Before() as before:
        for plan in plans:
            model = load_model(plan.model)
            for seed in plan.seeds:
                for region in plan.regions:
                    spec = {
                        "model": plan.model,
                        "region": region,
                        "seed": seed,
                        "step": step,
                        "strength": _STRENGTH,
                        "saturation": list(plan.saturation),
                    }
                    # Alternate which side runs first, so drifting load hits both alike.
                    if len(cases) % 2 == 0:
                        old = before.measure(spec)
                        new = _after_guarded(model, spec)
                    else:
                        new = _after_guarded(model, spec)
                        old = before.measure(spec)
                    cases.append(_Case(plan.model, region, seed, old, new))
                    elapsed = time.perf_counter() - began
                    print(_progress(cases[-1], elapsed), file=sys.stderr, flush=True)
    total = time.perf_counter() - began
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    changed = _source_fingerprint() != fingerprint

    lines = [
        "## Path-following before and after the rewrite",
        "",
        f"Before: `follow_path` of commit `{before_commit[:7]}` (`{before_commit}`), "
        "extracted with `git archive` into a temporary directory and run in a child "
        "interpreter (same Python, `PYTHONPATH` = that copy's `src`), with its own "
        f"`analyze`. After: `lowrankgan.pipeline.path.follow_path` of {after}; sha256 of "
        f"`src/lowrankgan/**/*.py` `{fingerprint}` at the start"
        + (
            " (**the sources changed during the run**: after is the code imported at the start)"
            if changed
            else ", unchanged during the run"
        )
        + ". Each case: "
        "`analyze(model, model.sample_latent(seed), region)` with default settings, direction "
        "0, the analysis's keep mask, region mask and keep rank; path step "
        f"{step:g}. Before and after run one after the other on each case, the side that "
        "goes first alternating between cases. Fields = calls of `analysis_field` in the "
        "path's module (one Jacobian field each). Rms inside and ratio = "
        "`locality(original, edited, region_mask, keep_mask)` (ratio = rms change in the kept "
        "region / rms change inside the region, lower is more local); cosine = how much of "
        "the latent displacement lies along the requested direction. Change targets "
        f"({', '.join(f'{c:g}' for c in _CHANGES)}: `follow_path(..., None, ..., changes=...)`, "
        "default `max_strength`) exist after only; their strength is the arc length "
        "travelled, and seconds and fields are those of the one call that reaches both.",
        "",
        f"Timings are single runs on a {os.cpu_count()}-core machine shared with other work, "
        "so they are noisy (see the load averages in the Machine section and below); the field "
        "counts and locality numbers do not depend on the load. "
        f"torch {torch.get_num_threads()} thread(s) on both sides"
        + (
            " (one: on a machine shared with other work, two threads per process oversubscribe "
            "the cores, and the many small operations of a path step then slow down unevenly). "
            if torch.get_num_threads() == 1 and (os.cpu_count() or 1) > 1
            else ". "
        )
        + f"1-minute load average {load[0]:.2f} at the start, {load_end[0]:.2f} at the end; "
        f"all cases took {total:.0f} s. Command: `{_command()}`; `make bench` regenerates this "
        "section with the others.",
        "",
    ]
    if quick:
        lines += [
            "Quick smoke run: fewer cases and a coarse path step, so these numbers are not "
            "the benchmark's; run without `--quick` for them.",
            "",
        ]
    else:
        lines += [
            "Cases: "
            + "; ".join(
                f"`{p.model}` seeds {', '.join(map(str, p.seeds))}, regions {', '.join(p.regions)}"
                for p in plans
            )
            + ". Seeds 0-3 and every region of both models would take about an hour (an "
            "`omniart-eyes` case alone takes ~7 minutes: the old path computes 21 fields of "
            "~10 s there); the old path's saturation strengths are followed on "
            f"`{_GOAL_MODEL}` only.",
            "",
        ]
    lines += _goal_rows(cases) + ["", _agreement_note(cases), ""]
    for plan in plans:
        mine = [c for c in cases if c.model == plan.model]
        strengths = (_STRENGTH, *plan.saturation)
        lines += [
            f"### `{plan.model}`",
            "",
            f"Path-following to strength {_STRENGTH:g}, before / after:",
            "",
            *_strength_table(mine),
            "",
            "After: change targets (strength needed and ratio there); before: the change "
            f"inside the region at strength {', '.join(f'{s:g}' for s in strengths)}:",
            "",
            *_change_table(mine, plan.saturation),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        sys.exit(_child_main())
    print(run(quick="--quick" in sys.argv))
