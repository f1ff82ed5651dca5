"""Training loop, checkpoints, resume, and the ``sde`` command line."""

import json

import pytest
import torch
import xarray as xr

from sciml_diffusion.cli import main
from sciml_diffusion.sde.latent import LatentSDE
from sciml_diffusion.sde.series import ObservedSeries
from sciml_diffusion.sde.train import TrainConfig, Trainer, load_run, train


def toy_series(seed=0):
    g = torch.Generator().manual_seed(seed)
    times = torch.linspace(0, 1, 6)
    return ObservedSeries.from_tensors(times, torch.randn(16, 6, 2, generator=g))


def new_model(method="matching"):
    torch.manual_seed(0)
    posterior = "marginal" if method == "matching" else "drift"
    return LatentSDE(2, 2, hidden=8, context_dim=4, posterior=posterior)


@pytest.mark.parametrize("method", ["matching", "backprop"])
def test_resumed_training_equals_uninterrupted_training(tmp_path, method):
    series = toy_series()
    kwargs = {"method": method, "batch_size": 4, "dt": 0.2, "checkpoint_every": 2}
    straight = new_model(method)
    train(straight, series, TrainConfig(steps=4, **kwargs), progress=False)

    def interrupt(trainer):
        if trainer.step_count == 2:
            raise KeyboardInterrupt

    first = new_model(method)
    with pytest.raises(KeyboardInterrupt):
        train(
            first, series, TrainConfig(steps=4, **kwargs), run_dir=tmp_path,
            callback=interrupt, progress=False,
        )  # fmt: skip
    resumed = new_model(method)
    trainer = train(
        resumed,
        series,
        TrainConfig(steps=4, **kwargs),
        run_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert trainer.step_count == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    run = load_run(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["step"] == 4
    assert run.config.method == method and run.trainer_state is not None


def test_trainer_refuses_a_model_of_the_wrong_kind():
    with pytest.raises(ValueError, match="posterior='drift'"):
        Trainer(new_model("matching"), toy_series(), TrainConfig(method="adjoint"))
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="ode")


def test_kl_annealing_weight_rises_to_one():
    trainer = Trainer(new_model(), toy_series(), TrainConfig(kl_anneal_steps=4, batch_size=2))
    weights = []
    for _ in range(5):
        weights.append(trainer.kl_weight)
        trainer.step()
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_cli_simulate_train_resume_forecast(tmp_path, capsys):
    data, run, out = tmp_path / "ou.nc", tmp_path / "run", tmp_path / "forecast.nc"
    args = ["sde", "simulate", "ou", "--samples", "8", "--times", "6", "--out", str(data)]
    assert main(args + ["--keep", "0.8", "--missing", "0.1", "--obs-noise", "0.05"]) == 0
    train_args = ["sde", "train", "--data", str(data), "--latent-dim", "1", "--hidden", "8"]
    train_args += ["--batch-size", "4", "--out", str(run), "--quiet"]
    assert main(train_args + ["--steps", "2"]) == 0
    assert main(train_args + ["--steps", "3"]) == 2  # refuses to overwrite a run
    assert "--resume" in capsys.readouterr().err
    assert main(train_args + ["--steps", "3", "--resume"]) == 0
    assert load_run(run).trainer_state["step"] == 3
    forecast_args = ["sde", "forecast", "--checkpoint", str(run), "--data", str(data)]
    assert main(forecast_args + ["--members", "3", "--horizon", "4", "--out", str(out)]) == 0
    ds = xr.open_dataset(out, engine="h5netcdf")
    assert ds["state"].dims == ("member", "sample", "lead_time", "channel")
    assert ds.sizes["member"] == 3 and ds.sizes["lead_time"] == 4
    assert ds["valid_time"].dims == ("sample", "lead_time")
    assert not ds["state"].isnull().any()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--latent-dim", "0"], "latent_dim must be >= 1"),
        (["--heads", "0"], "must be"),
        (["--period", "-12"], "must be"),
        (["--covariates", "nope.nc"], "no such file"),
    ],
)
def test_cli_reports_bad_training_input(tmp_path, capsys, args, message):
    data = tmp_path / "d.nc"
    series = ObservedSeries.from_sequences(
        [
            (torch.tensor([0.0, 0.5]), torch.ones(2, 1)),
            (torch.tensor([0.2, 0.9]), torch.ones(2, 1)),
        ]
    )
    from sciml_diffusion.sde.series import series_to_dataset

    series_to_dataset(series).to_netcdf(data, engine="h5netcdf")
    code = main(
        ["sde", "train", "--data", str(data), "--out", str(tmp_path / "r"), "--quiet"] + args
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_file_is_a_one_line_error(tmp_path, capsys):
    code = main(["sde", "train", "--data", str(tmp_path / "nope.nc"), "--out", str(tmp_path)])
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_training_with_hidden_slots_keeps_a_common_start_for_the_solver():
    config = TrainConfig(method="backprop", batch_size=4, dt=0.2, hide_fraction=0.5)
    trainer = Trainer(new_model("backprop"), toy_series(), config)
    assert all(torch.isfinite(torch.tensor(trainer.step())) for _ in range(2))
    with pytest.raises(ValueError, match="hide_fraction"):
        TrainConfig(hide_fraction=1.0)


@pytest.mark.parametrize("more", [10, 3])
def test_resume_with_other_steps_ends_at_lr_final(tmp_path, more):
    """Resuming 10 steps to 10 + more must still end at lr_final (it used to keep the decay
    of the first 10 steps and end 10x below it)."""
    series = toy_series()
    kwargs = {"batch_size": 4, "lr": 1e-2, "lr_final": 1e-3}
    train(new_model(), series, TrainConfig(steps=10, **kwargs), run_dir=tmp_path, progress=False)
    trainer = train(
        new_model(),
        series,
        TrainConfig(steps=10 + more, **kwargs),
        run_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert trainer.step_count == 10 + more
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize("method", ["matching", "adjoint"])
def test_cli_seasonal_model_forecasts_windows_with_different_starts(tmp_path, method):
    """Train with --period and --heads, forecast windows that start at different times from
    their own ends, evaluate against the seasonal references, draw the fan."""
    import numpy as np

    from sciml_diffusion.sde.windows import cut_windows, record_dataset, windows_dataset

    t = np.arange(60.0)
    x = np.sin(2 * np.pi * t / 12)[:, None] + 0.1 * np.random.default_rng(0).normal(size=(60, 1))
    units = "months since 2000-01-01"
    windows_dataset(cut_windows(t[:36], x[:36], 12, 4), ["x"], units).to_netcdf(
        tmp_path / "train.nc", engine="h5netcdf"
    )
    windows_dataset(cut_windows(t[30:54], x[30:54], 8, 5), ["x"], units).to_netcdf(
        tmp_path / "test.nc", engine="h5netcdf"
    )
    record_dataset(t, x, ["x"], units).to_netcdf(tmp_path / "record.nc", engine="h5netcdf")
    record_dataset(t[:36], x[:36], ["x"], units).to_netcdf(
        tmp_path / "train_record.nc", engine="h5netcdf"
    )
    run, f = tmp_path / "run", tmp_path / "f.nc"
    args = ["sde", "train", "--data", str(tmp_path / "train.nc"), "--method", method]
    args += ["--period", "12", "--heads", "2", "--hidden", "8", "--latent-dim", "2"]
    args += ["--batch-size", "4", "--steps", "2", "--dt", "0.5", "--quiet", "--out", str(run)]
    assert main(args) == 0
    model = load_run(run).model.config
    assert model["period"] == 12 and model["heads"] == 2 and model["autonomous"]
    assert main(args[:-2] + ["--steps", "3", "--resume", "--out", str(run)]) == 0
    assert main(args[:-2] + ["--period", "6", "--resume", "--out", str(run)]) == 2
    forecast = ["sde", "forecast", "--checkpoint", str(run), "--data", str(tmp_path / "test.nc")]
    forecast += ["--horizon", "6", "--members", "4", "--dt", "0.5", "--context-window", "6"]
    forecast += ["--truth", str(tmp_path / "record.nc"), "--plot", str(tmp_path / "fan.png")]
    assert main(forecast + ["--quiet", "--out", str(f)]) == 0
    ds = xr.open_dataset(f, engine="h5netcdf")
    assert ds["init_time"].values.tolist() == [37.0, 42.0, 47.0, 52.0]  # each window's own end
    np.testing.assert_allclose(ds["valid_time"].values[:, 0], [38.0, 43.0, 48.0, 53.0])
    assert ds["valid_time"].attrs["time_units"] == units
    assert (tmp_path / "fan.png").stat().st_size > 0
    scores = tmp_path / "scores.nc"
    evaluate = ["sde", "evaluate", "--forecast", str(f), "--truth", str(tmp_path / "record.nc")]
    evaluate += ["--train", str(tmp_path / "train_record.nc"), "--period", "12"]
    assert main(evaluate + ["--out", str(scores)]) == 0
    s = xr.open_dataset(scores, engine="h5netcdf")
    assert s["method"].values.tolist() == [method, "climatology", "persistence"]
    assert s["crps"].shape == (3, 6) and np.isfinite(s["crps"].values).all()


def test_cli_trains_with_a_covariate_series_and_keeps_it_in_the_run(tmp_path):
    import numpy as np

    from sciml_diffusion.sde.windows import record_dataset

    data, cov, run = tmp_path / "d.nc", tmp_path / "cov.nc", tmp_path / "run"
    from sciml_diffusion.sde.series import series_to_dataset

    series_to_dataset(toy_series()).to_netcdf(data, engine="h5netcdf")
    t = np.linspace(0.0, 1.0, 5)
    record_dataset(t, np.stack([t, t**2], -1), ["a", "b"], "days").to_netcdf(
        cov, engine="h5netcdf"
    )
    args = ["sde", "train", "--data", str(data), "--covariates", str(cov), "--hidden", "8"]
    args += ["--latent-dim", "2", "--steps", "1", "--batch-size", "4", "--quiet"]
    assert main(args + ["--out", str(run)]) == 0
    model = load_run(run).model
    assert model.config["covariate_series"]["values"][2] == [0.5, 0.25]
    assert model.covariates.dim == 2
    assert main(args + ["--steps", "2", "--resume", "--out", str(run)]) == 2  # kept in the run
