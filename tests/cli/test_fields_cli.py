"""`sciml-diffusion data info` and `sciml-diffusion grf sample`."""

import pytest

from sciml_diffusion.cli import main
from sciml_diffusion.fields import FieldDataset


def test_grf_sample_then_info(tmp_path, capsys):
    out, png = tmp_path / "grf.nc", tmp_path / "grf.png"
    args = ["grf", "sample", "--resolution", "16", "--samples", "3", "--alpha", "2.5"]
    assert (
        main([*args, "--tau", "4", "--boundary", "neumann", "--out", str(out), "--plot", str(png)])
        == 0
    )
    ds = FieldDataset.open(out)
    assert ds.to_tensor().shape == (3, 1, 16, 16) and ds.xarray.attrs["boundary"] == "neumann"
    assert png.stat().st_size > 1000
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sample=3" in text and "nan=0.00%" in text and "Grid(y: 16 nodes" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "info", "missing.nc"], "no such file: missing.nc"),
        (["grf", "sample", "--alpha", "1", "--out", "x.nc"], "alpha=1.0 must exceed d/2=1.0"),
        (["grf", "sample", "--tau", "-2", "--out", "x.nc"], "tau must be positive"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
