"""The registry of problems and the shared interface."""

import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.fields import Grid

NAMES = (
    "darcy",
    "poisson",
    "helmholtz",
    "navier_stokes",
    "kolmogorov",
    "burgers",
    "cylinder",
)


def test_every_named_problem_is_registered():
    assert set(pdes.names()) == set(NAMES)
    for name in NAMES:
        problem = pdes.get(name)
        assert problem.name == name
        assert problem.inputs or problem.solutions
        assert set(problem.inputs) | set(problem.solutions) == {v.name for v in problem.variables}


def test_names_accept_dashes_and_case():
    assert isinstance(pdes.get("Navier-Stokes"), pdes.NavierStokes)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known problems: darcy, poisson"):
        pdes.get("heat")


def test_roles_separate_inputs_from_solutions():
    assert pdes.get("darcy").inputs == ("a",)
    assert pdes.get("darcy").solutions == ("u",)
    assert pdes.get("navier_stokes").inputs == ("w0",)


@pytest.mark.parametrize("count", [0, -3, 2.5])
def test_bad_sample_counts_are_refused(count):
    with pytest.raises(ValueError, match="number of samples"):
        pdes.get("darcy").generate(count, 9)


def test_grid_must_be_a_grid_or_resolution():
    with pytest.raises(ValueError, match="Grid or an integer resolution"):
        pdes.get("poisson").generate(1, "64")


def test_residual_rejects_wrong_channel_count():
    grid = Grid.regular((9, 9))
    with pytest.raises(ValueError, match=r"channels \['a', 'u'\]"):
        pdes.get("darcy").residual(torch.zeros(2, 3, 9, 9), grid)
