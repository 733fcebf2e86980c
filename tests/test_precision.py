"""Exact float32 math: `exact_math()` turns TF32 (and oneDNN's bfloat16) off and restores the
flags exactly; the Jacobian, Gram, direction and path code runs inside it; `analysis.json`
records the precision. The GPU tests skip without CUDA."""

from __future__ import annotations

import copy
import dataclasses
import threading
import warnings
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lowrankgan.core import precision
from lowrankgan.core.directions import directions_from_grams
from lowrankgan.core.gram import gram_from_field, jacobian_gram, mask_weights
from lowrankgan.core.jacobian import analysis_view, jacobian_field
from lowrankgan.core.precision import exact_math, linalg_device, precision_record
from lowrankgan.core.subspace import eig_desc
from lowrankgan.models.base import Model, generic_presets
from lowrankgan.pipeline.analysis import Analysis, analyze
from lowrankgan.pipeline.path import follow_path
from lowrankgan.pipeline.settings import AnalysisSettings

NEW_API = hasattr(torch._C, "_get_fp32_precision_getter")
# The per-operation settings of torch >= 2.9 and their "all" parents.
SETTINGS = [
    ("generic", "all"),
    ("cuda", "all"),
    ("cuda", "matmul"),
    ("cuda", "conv"),
    ("cuda", "rnn"),
    ("mkldnn", "all"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def _read(getter):
    try:
        return getter()
    except RuntimeError:  # the legacy getters raise when the two interfaces disagree
        return "raises"


def snapshot() -> dict:
    """Every observable float32-math flag, legacy and per-operation."""
    state = {
        "matmul_precision": _read(torch.get_float32_matmul_precision),
        "cuda_allow_tf32": _read(lambda: torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": _read(lambda: torch.backends.cudnn.allow_tf32),
    }
    if NEW_API:
        for backend, op in SETTINGS:
            state[f"{backend}.{op}"] = torch._C._get_fp32_precision_getter(backend, op)
    return state


def flags() -> tuple:
    """The legacy view of the flags (what a network's forward pass would see)."""
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )


EXACT = (False, False, "highest")


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """TF32 allowed for cuBLAS and cuDNN (the legacy switches), the process's flags put back
    afterwards whatever a test did."""
    raw = {op: torch._C._get_fp32_precision_getter(*op) for op in SETTINGS} if NEW_API else {}
    matmul = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    assert flags() == (True, True, "high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn
        for op, value in raw.items():
            torch._C._set_fp32_precision_setter(*op, value)


# -- the context manager ---------------------------------------------------------------------


def test_flags_are_off_inside_and_restored_after(tf32_on):
    before = snapshot()
    with exact_math():
        assert flags() == EXACT
        if NEW_API:
            for backend, op in SETTINGS:
                if op != "all":
                    assert torch._C._get_fp32_precision_getter(backend, op) == "ieee"
    assert snapshot() == before
    assert flags() == (True, True, "high")


def test_flags_are_restored_after_an_exception(tf32_on):
    before = snapshot()
    with pytest.raises(KeyError), exact_math():
        assert flags() == EXACT
        raise KeyError("boom")
    assert snapshot() == before


def test_nested_blocks_restore_only_at_the_outermost(tf32_on):
    before = snapshot()
    with exact_math():
        with exact_math():
            assert flags() == EXACT
        assert flags() == EXACT  # the inner exit must not restore TF32
        with pytest.raises(ValueError), exact_math():
            raise ValueError
        assert flags() == EXACT
    assert snapshot() == before


def test_decorator_form(tf32_on):
    @exact_math()
    def inside() -> tuple:
        return flags()

    assert inside() == EXACT
    assert inside() == EXACT  # reusable
    assert flags() == (True, True, "high")


@pytest.mark.skipif(not NEW_API, reason="per-operation settings need torch >= 2.9")
def test_per_operation_settings_are_restored_exactly(tf32_on):
    # A state set through the new interface only, in which the legacy getters raise.
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    torch.backends.fp32_precision = "tf32"
    before = snapshot()
    with exact_math():
        assert flags() == EXACT
        assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
    assert snapshot() == before


def test_overlapping_threads_restore_once_the_last_one_leaves(tf32_on):
    before = snapshot()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple] = {}

    def first() -> None:
        with exact_math():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with exact_math():
            second_in.set()
            first_out.wait(10)
            seen["after first left"] = flags()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen["after first left"] == EXACT
    assert snapshot() == before


def test_no_warnings(tf32_on):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with exact_math():
            precision_record("cpu", 10)
    assert [str(w.message) for w in caught] == []


def test_precision_record_says_what_ran(monkeypatch, tf32_on):
    record = precision_record("cpu", 100)
    assert record["tf32"] is False
    assert record["float32_matmul"] == "ieee" and record["float32_conv"] == "ieee"
    assert record["gram_accumulation"] == "float64" and record["gram_products"] == "float64"
    assert record["device"] == "cpu" and record["linalg_device"] == "cpu"
    assert precision_record("cuda:0", 4096)["linalg_device"] == "cuda:0"
    assert precision_record("cuda:0", 4096)["tf32"] is False
    monkeypatch.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")  # cuBLAS ignores the flags
    assert precision_record("cuda:0")["tf32"] is True
    assert precision_record("cpu")["tf32"] is False


def test_linalg_device_rule():
    assert linalg_device(2047, "cuda:1") == torch.device("cpu")
    assert linalg_device(2048, "cuda:1") == torch.device("cuda:1")
    assert linalg_device(9216, "mps") == torch.device("cpu")  # no float64 there
    assert linalg_device(9216, "cpu") == torch.device("cpu")
    assert precision.LINALG_DEVICE_MIN_DIM == 2048


# -- the code that must run inside it --------------------------------------------------------

LATENT, SIZE = 6, 8


class SpyGenerator(nn.Module):
    """A small linear + convolution generator that records the flags its forward pass sees."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.linear = nn.Linear(LATENT, 4 * 4 * 4)
        self.conv = nn.Conv2d(4, 3, 3, padding=1)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)
        self.requires_grad_(False)
        self.seen: list[tuple] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(flags())
        x = self.linear(z).reshape(-1, 4, 4, 4)
        x = nn.functional.interpolate(x, scale_factor=2)
        return torch.tanh(self.conv(x))


def spy_model() -> Model:
    return Model(
        name="spy",
        network=SpyGenerator().eval(),
        latent_dim=LATENT,
        resolution=(SIZE, SIZE),
        synthesis_fn=lambda net, latents, condition: net(latents),
        presets=generic_presets(SIZE, SIZE),
        source="tests/test_precision.py",
    )


class MatmulSpy(TorchFunctionMode):
    """Records the flags at every matrix product and eigendecomposition."""

    WATCHED = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.linalg.eigh}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.WATCHED:
            self.seen.append(flags())
        return func(*args, **(kwargs or {}))


def test_jacobian_field_runs_with_tf32_off(tf32_on):
    model = spy_model()
    jacobian_field(model, model.sample_latent(0), chunk_size=2)
    jacobian_field(model, model.sample_latent(0), memory_budget=1 << 30)  # calibrated
    assert model.network.seen and set(model.network.seen) == {EXACT}
    assert flags() == (True, True, "high")


def test_gram_and_directions_run_with_tf32_off(tf32_on):
    model = spy_model()
    field = jacobian_field(model, model.sample_latent(0), chunk_size=LATENT)
    masks = torch.stack(
        [model.presets["left"].mask(SIZE, SIZE), model.presets["right"].mask(SIZE, SIZE)]
    )
    spy = MatmulSpy()
    with spy:
        grams = gram_from_field(field, mask_weights(masks))
        gram_from_field(field, mask_weights(masks), products="float32")
        directions_from_grams(grams[0], grams[1], AnalysisSettings(rank=2, keep_rank=3))
    assert spy.seen and set(spy.seen) == {EXACT}
    assert flags() == (True, True, "high")


def test_follow_path_runs_with_tf32_off(tf32_on):
    model = spy_model()
    keep = model.presets["right"].mask(SIZE, SIZE)
    direction = torch.zeros(LATENT)
    direction[0] = 1.0
    model.network.seen.clear()
    follow_path(model, model.sample_latent(0), direction, [0.5], keep, keep_rank=2, step=0.25)
    assert model.network.seen and set(model.network.seen) == {EXACT}
    assert flags() == (True, True, "high")


def test_analysis_json_records_the_precision(tmp_path, tf32_on):
    model = spy_model()
    result = analyze(model, model.sample_latent(0), "left", rank=2, keep_rank=3)
    assert result.info["precision"] == precision_record(model.device, model.latent_dim)
    assert result.info["precision"]["tf32"] is False
    result.save(tmp_path)
    loaded = Analysis.load(tmp_path / "analysis.npz")
    assert loaded.info["precision"]["float32_matmul"] == "ieee"
    assert loaded.info["precision"]["gram_accumulation"] == "float64"


def test_one_eigendecomposition_per_gram():
    """`directions_from_grams` decomposes each low-rank Gram once (it used to twice)."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(12, 9, generator=gen, dtype=torch.float64)
    spy = MatmulSpy()
    spy.WATCHED = {torch.linalg.eigh}
    settings = AnalysisSettings(use_rpca=False)
    with spy:
        directions_from_grams(a @ a.T, b @ b.T, settings)
    assert len(spy.seen) == 2


# -- on a GPU ----------------------------------------------------------------------------------


def _float64_field(model: Model, latent: torch.Tensor) -> torch.Tensor:
    reference = dataclasses.replace(model, network=copy.deepcopy(model.network).double())
    return jacobian_field(reference, latent.double(), chunk_size=model.latent_dim)


def _tf32_field(model: Model, latent: torch.Tensor) -> torch.Tensor:
    """The same forward-mode field, computed outside `exact_math` with TF32 allowed."""
    point = latent.reshape(1, -1).to(model.device)

    def view(z: torch.Tensor) -> torch.Tensor:
        return analysis_view(model.synthesize(z), None, False)[0]

    eye = torch.eye(model.latent_dim, device=model.device)
    with torch.no_grad():
        return torch.func.vmap(lambda t: torch.func.jvp(view, (point,), (t[None],))[1])(eye)


def _wide_model(device: str) -> Model:
    """A generator with matmul- and convolution-heavy layers (where TF32 rounds)."""
    gen = torch.Generator().manual_seed(1)
    network = nn.Sequential(
        nn.Linear(64, 64 * 8 * 8),
        nn.Unflatten(1, (64, 8, 8)),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(64, 3, 3, padding=1),
        nn.Tanh(),
    )
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.05)
    network = network.to(device).eval().requires_grad_(False)
    return Model(
        name="wide",
        network=network,
        latent_dim=64,
        resolution=(16, 16),
        synthesis_fn=lambda net, latents, condition: net(latents),
        presets=generic_presets(16, 16),
    )


@needs_cuda
def test_gpu_jacobian_and_gram_are_exact_inside_exact_math(tf32_on):
    model = _wide_model("cuda")
    latent = torch.randn(64, generator=torch.Generator().manual_seed(2)).to("cuda")
    reference = _float64_field(model, latent)
    exact = jacobian_field(model, latent, chunk_size=64)
    scale = reference.abs().max()
    assert ((exact.double() - reference).abs().max() / scale).item() < 1e-5
    masks = torch.stack([model.presets["left"].mask(16, 16), model.presets["right"].mask(16, 16)])
    weights = mask_weights(masks).cuda()
    gram_ref = gram_from_field(reference, weights)
    gram = jacobian_gram(model, latent, masks.cuda(), chunk_size=64)
    assert ((gram - gram_ref).abs().max() / gram_ref.abs().max()).item() < 1e-5
    if torch.cuda.get_device_capability()[0] >= 8:  # TF32 hardware (Ampere and later)
        tf32 = _tf32_field(model, latent)
        assert ((tf32.double() - reference).abs().max() / scale).item() > 1e-4
        gram_tf32 = gram_from_field(tf32, weights)
        assert ((gram_tf32 - gram_ref).abs().max() / gram_ref.abs().max()).item() > 1e-4


@needs_cuda
def test_gpu_eigendecomposition_of_a_large_gram_matches_the_cpu():
    gen = torch.Generator().manual_seed(4)
    factor = torch.randn(2048, 40, generator=gen, dtype=torch.float64)
    gram = factor @ factor.T
    values_cpu, vectors_cpu = eig_desc(gram)
    values_gpu, vectors_gpu = eig_desc(gram, device="cuda")
    assert values_gpu.device.type == "cpu"
    torch.testing.assert_close(values_gpu[:40], values_cpu[:40], rtol=1e-10, atol=1e-9)
    cosines = torch.linalg.svdvals(vectors_cpu[:, :40].T @ vectors_gpu[:, :40])
    assert cosines.min() > 1 - 1e-9
