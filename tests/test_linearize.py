"""Tangent programs: a JVP traced once, evaluated at any point."""

from __future__ import annotations

import pytest
import torch

from lowrankgan.core import jacobian as jac
from lowrankgan.core.linearize import TangentProgram, UntraceableError
from structured import structured_model


def _view(model):
    return jac.view_function(model)


def test_a_program_traced_at_one_point_gives_the_jvp_at_others():
    model = structured_model(torch.float64)
    view = _view(model)
    first, second = (model.sample_latent(s).reshape(1, -1) for s in (0, 1))
    program = TangentProgram(view, first)
    generator = torch.Generator().manual_seed(0)
    for point in (second, first):
        push = program.at(point)
        for _ in range(2):  # the kept values survive a product
            tangent = torch.randn(point.shape, generator=generator, dtype=torch.float64)
            expected = torch.func.jvp(view, (point,), (tangent,))[1]
            torch.testing.assert_close(push(tangent), expected, rtol=1e-12, atol=1e-12)


def test_a_nonlinear_network_is_linearised_where_it_is_evaluated():
    """The kept values are the point's own: a tanh network's product changes with the point."""

    def fn(point: torch.Tensor) -> torch.Tensor:
        return torch.tanh(3.0 * point).sum(dim=0)

    program = TangentProgram(fn, torch.zeros(1, 4, dtype=torch.float64))
    tangent = torch.ones(1, 4, dtype=torch.float64)
    point = torch.full((1, 4), 0.5, dtype=torch.float64)
    expected = 3.0 * (1 - torch.tanh(torch.tensor(1.5, dtype=torch.float64)) ** 2)
    torch.testing.assert_close(
        program.at(point)(tangent), torch.full((4,), float(expected), dtype=torch.float64)
    )
    torch.testing.assert_close(program.at(torch.zeros_like(point))(tangent), 3.0 * tangent[0])


def test_branches_on_tensor_values_and_writes_into_shared_values_are_refused():
    def branching(point: torch.Tensor) -> torch.Tensor:
        return point * 2 if bool(point.sum() > 0) else point

    def in_place(point: torch.Tensor) -> torch.Tensor:
        doubled = point * 2
        return doubled.add_(point) * doubled  # the write reaches a value read again

    for fn in (branching, in_place):
        with pytest.raises(UntraceableError):
            TangentProgram(fn, torch.ones(1, 3))


def test_a_model_is_traced_once_per_view():
    model = structured_model(torch.float64)
    for seed in (0, 1):
        point = model.sample_latent(seed).reshape(1, -1)
        push = jac.linearized_view(model, point)
        tangent = torch.randn(model.latent_dim, dtype=torch.float64)
        expected = torch.func.jvp(_view(model), (point,), (tangent.unsqueeze(0),))[1]
        torch.testing.assert_close(push(tangent), expected, rtol=1e-12, atol=1e-12)
    assert len(jac._PROGRAMS[id(model)]) == 1


def test_a_models_programs_go_with_it():
    import gc

    model = structured_model(torch.float64)
    key = id(model)
    assert jac.linearized_view(model, model.sample_latent(0).reshape(1, -1)) is not None
    assert key in jac._PROGRAMS
    del model
    gc.collect()
    assert key not in jac._PROGRAMS  # the program does not keep its model alive
