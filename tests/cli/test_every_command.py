"""What every command offers: help with defaults and units, progress bars, --plot, and
``data info`` on every file the package writes."""

import argparse

import pytest

from sciml_diffusion.cli import build_parser, main


def commands():
    """(name, parser) of every leaf command."""
    found = []

    def walk(parser, name):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.append((name, parser))
        for sub in subs:
            for child, child_parser in sub.choices.items():
                walk(child_parser, f"{name} {child}".strip())

    walk(build_parser(), "")
    return found


@pytest.mark.parametrize("name, parser", commands(), ids=[n for n, _ in commands()])
def test_help_shows_every_default(name, parser):
    parser.format_help()  # the whole page renders
    formatter = parser._get_formatter()
    for action in parser._actions:
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.default == argparse.SUPPRESS or not action.option_strings:
            continue
        text = formatter._expand_help(action)
        assert f"default: {action.default}" in text, (name, action.dest, text)


@pytest.mark.parametrize(
    "command, options",
    [
        (["sde", "forecast"], ["--dt", "--step", "--horizon"]),
        (["sde", "simulate"], ["--t-end", "--dt"]),
        (["sde", "train"], ["--dt"]),
    ],
)
def test_times_say_their_units(command, options):
    parser = dict(commands())[" ".join(command)]
    for action in parser._actions:
        if set(action.option_strings) & set(options):
            assert "time units" in action.help, action.option_strings


def test_long_commands_show_progress(prior_run, series_file, sde_run, tmp_path, capsys):
    argv = ["prior", "sample", "--checkpoint", str(prior_run), "--samples", "1", "--steps", "2"]
    assert main([*argv, "--out", str(tmp_path / "p.nc")]) == 0
    assert "sampling" in capsys.readouterr().err
    argv = ["sde", "simulate", "ou", "--samples", "2", "--times", "4"]
    assert main([*argv, "--out", str(tmp_path / "s.nc")]) == 0
    assert "simulating ou" in capsys.readouterr().err
    argv = ["sde", "forecast", "--checkpoint", str(sde_run), "--data", str(series_file)]
    assert main([*argv, "--horizon", "2", "--members", "2", "--out", str(tmp_path / "f.nc")]) == 0
    assert "forecasting" in capsys.readouterr().err


def test_every_command_that_writes_fields_can_plot_them(prior_run, tmp_path):
    runs = {
        "make.png": ["data", "make", "poisson", "--samples", "2", "--resolution", "9",
                     "--no-progress", "--out", str(tmp_path / "m.nc")],
        "grf3d.png": ["grf", "sample", "--dims", "3", "--resolution", "6", "--samples", "2",
                      "--out", str(tmp_path / "g.nc")],
        "prior.png": ["prior", "sample", "--checkpoint", str(prior_run), "--samples", "2",
                      "--steps", "2", "--quiet", "--out", str(tmp_path / "p.nc")],
    }  # fmt: skip
    for png, argv in runs.items():
        assert main([*argv, "--plot", str(tmp_path / png)]) == 0, png
        assert (tmp_path / png).stat().st_size > 1000, png


def test_plots_carry_coordinates_and_units(tmp_path):
    import numpy as np

    from sciml_diffusion.fields import FieldDataset, Grid
    from sciml_diffusion.plot import plot_fields

    grid = Grid.regular((4, 6), lengths=(2.0, 3.0), units=("m", "km"), axes=("y", "x"))
    data = FieldDataset.from_tensor(np.ones((1, 1, 4, 6)), ["p"], grid=grid)
    data.xarray["p"].attrs["units"] = "Pa"
    fig = plot_fields(data)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x [km]" and ax.get_ylabel() == "y [m]"
    left, right, bottom, top = ax.images[0].get_extent()
    assert left < 0 < 3 < right and bottom < 0 < 2 < top
    assert fig.axes[-1].get_ylabel() == "p [Pa]"  # the colour bar


def test_data_info_summarises_time_series_and_forecasts(series_file, sde_run, tmp_path, capsys):
    forecast = tmp_path / "f.nc"
    argv = ["sde", "forecast", "--checkpoint", str(sde_run), "--data", str(series_file)]
    assert (
        main([*argv, "--horizon", "2", "--members", "2", "--quiet", "--out", str(forecast)]) == 0
    )
    capsys.readouterr()
    for path in (series_file, forecast):
        assert main(["data", "info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "state" in out and "dims=['" in out and "sample=8" in out


def test_prior_sample_plot_path_is_checked_before_sampling(prior_run, tmp_path, capsys):
    argv = ["prior", "sample", "--checkpoint", str(prior_run), "--samples", "1", "--quiet"]
    out = tmp_path / "s.nc"
    assert main([*argv, "--out", str(out), "--plot", str(tmp_path / "s.txt")]) == 2
    assert not out.exists() and "--plot" in capsys.readouterr().err
