"""Data larger than memory: lazy (dask) opening, streaming statistics, per-batch reads."""

import re
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from dask.callbacks import Callback

from sciml_diffusion.cli import main
from sciml_diffusion.fields import FieldDataset, Grid, Normalizer, io
from sciml_diffusion.fields.batches import LazyBatches, TensorBatches
from sciml_diffusion.fields.normalize import Moments, streaming_moments
from tests.fields.test_real_files import LAND, NLAT, NLON, NT, climate_file

pytest.importorskip("zarr")


def field_set(n=12, seed=0):
    """``n`` samples of two variables on a 6x8 grid, with NaN 'land' in ``u``."""
    rng = np.random.default_rng(seed)
    grid = Grid.regular((6, 8), periodic=(False, True))
    a = 3.0 + 2.0 * rng.standard_normal((n, 6, 8))
    u = -1.0 + 0.1 * rng.standard_normal((n, 6, 8))
    u[:, 1:3, 2:5] = np.nan
    x = torch.as_tensor(np.stack([a, u], 1))
    return FieldDataset.from_tensor(x, variables=["a", "u"], grid=grid)


def consecutive_files(folder, stem):
    """Two climate files, the second holding the ``NT`` time steps after the first."""
    paths = [climate_file(folder / f"{stem}_0.nc"), folder / f"{stem}_1.nc"]
    raw = xr.open_dataset(paths[0], engine="h5netcdf", decode_times=False, mask_and_scale=False)
    later = raw.assign_coords(time=raw["time"] + 6.0 * NT)  # same packing and calendar
    later["time"].attrs = raw["time"].attrs
    later.to_netcdf(paths[1], engine="h5netcdf")
    return paths


def is_dask(ds: FieldDataset) -> bool:
    return all(isinstance(ds.xarray[v].data, da.Array) for v in ds.variables)


class ChunkReads(Callback):
    """Counts the chunks of the stored arrays that a compute touches."""

    def __init__(self, names):
        super().__init__()
        self.names, self.keys = tuple(names), set()

    def _pretask(self, key, dsk, state):
        if isinstance(key, tuple) and str(key[0]).startswith(self.names):
            self.keys.add(key)


@pytest.fixture
def store(tmp_path):
    ds = field_set()
    FieldDataset(ds.xarray.chunk(sample=1)).save(tmp_path / "fields.zarr")  # a chunk per sample
    return ds, tmp_path / "fields.zarr"


def test_zarr_opens_lazily_chunked_along_sample(store):
    eager, path = store
    lazy = FieldDataset.open(path, chunks=2)
    assert lazy.is_lazy and is_dask(lazy)
    assert lazy.xarray["a"].chunks[0] == (2,) * 6 and lazy.xarray["a"].chunks[1] == (6,)
    assert not FieldDataset.open(path).is_lazy  # small: read as usual
    lazy.describe(), lazy.layout(), lazy.split([0.5, 0.5])
    assert is_dask(lazy)  # summaries and selections read nothing into the data set
    np.testing.assert_array_equal(lazy.to_numpy(), eager.to_numpy())
    assert lazy.describe() == eager.describe()


def test_a_batch_reads_only_its_chunks(store):
    _, path = store
    lazy = FieldDataset.open(path, chunks=1)
    names = {lazy.xarray[v].data.name.split("-")[0] for v in lazy.variables}
    reads = ChunkReads(names)
    with reads, dask.config.set(scheduler="synchronous"):
        lazy.isel(sample=[7, 3, 7]).to_numpy()
    touched = {(k[0], k[1]) for k in reads.keys}
    assert touched and {k[1] for k in touched} == {3, 7}


@pytest.mark.parametrize("chunks", [3, "auto"])
def test_multi_file_netcdf_opens_lazily(tmp_path, chunks):
    paths = consecutive_files(tmp_path, "sst")
    both = FieldDataset.open(str(tmp_path / "sst_*.nc"), chunks=chunks)
    assert is_dask(both) and both.xarray.sizes["time"] == 2 * NT
    listed = FieldDataset.open(paths)
    assert is_dask(listed) and listed.xarray.sizes["time"] == 2 * NT
    assert both.decreasing == ("lat",) and np.all(np.diff(both.grid.coords[0]) > 0)
    np.testing.assert_array_equal(
        both.isel(time=slice(0, NT)).to_numpy(), FieldDataset.open(paths[0]).to_numpy()
    )


def test_real_file_properties_hold_lazily(tmp_path):
    path = climate_file(tmp_path / "sst.nc", calendar="360_day")
    eager, lazy = FieldDataset.open(path), FieldDataset.open(path, chunks=4)
    assert is_dask(lazy) and lazy.xarray["sst"].chunks[0] == (4, 4, 2)
    assert lazy.decreasing == ("lat",) and lazy.grid == eager.grid  # north -> south flipped
    assert lazy.xarray["time"].encoding["calendar"] == "360_day"  # cftime decoded
    assert lazy.xarray["sst"].dtype.kind == "f"  # packed int16 unpacked
    mask = lazy.mask()
    land = ~mask[0, 0, 0].numpy()
    assert land[NLAT - 9 : NLAT - 5, LAND[1]].all() and land.sum() == 4 * 5
    torch.testing.assert_close(lazy.to_tensor(), eager.to_tensor(), rtol=0, atol=0)
    assert lazy.describe() == eager.describe()
    out = tmp_path / "copy.nc"
    lazy.save(out)
    raw = xr.open_dataset(out, engine="h5netcdf", mask_and_scale=False, decode_times=False)
    assert raw["sst"].dtype == np.int16 and raw["lat"].values[0] > raw["lat"].values[-1]
    assert NLON == lazy.grid.shape[1]


def test_moments_merge_equals_one_pass():
    rng = np.random.default_rng(1)
    values = 1e4 + rng.standard_normal(1000)  # a large mean: naive sums lose digits
    parts = np.split(values, [10, 11, 500])
    merged = Moments()
    for part in parts:
        merged = merged.merge(Moments.of(part))
    assert merged.count == 1000
    assert merged.mean == pytest.approx(values.mean(), rel=1e-14)
    assert merged.std == pytest.approx(values.std(), rel=1e-10)


@pytest.mark.parametrize("block_bytes", [8 * 48, 10**9])
def test_streaming_statistics_equal_in_memory_ones(store, block_bytes):
    eager, path = store
    lazy = FieldDataset.open(path, chunks=1)
    moments = streaming_moments(lazy, ["a", "u"], block_bytes=block_bytes)
    fitted = Normalizer.from_moments(moments, spatial_ndim=2)
    values = eager.to_numpy()
    np.testing.assert_allclose(fitted.mean, np.nanmean(values, axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(fitted.std, np.nanstd(values, axis=(0, 2, 3)), rtol=1e-12)
    assert moments["u"].count == np.isfinite(values[:, 1]).sum()
    np.testing.assert_allclose(Normalizer.fit(lazy).std, Normalizer.fit(eager).std, rtol=1e-12)


def test_streaming_statistics_refuse_infinities(tmp_path):
    ds = field_set()
    ds.xarray["a"][5, 2, 2] = np.inf
    FieldDataset(ds.xarray.chunk(sample=2)).save(tmp_path / "bad.zarr")
    with pytest.raises(ValueError, match="infinite"):
        Normalizer.fit(FieldDataset.open(tmp_path / "bad.zarr", chunks=2))


def test_lazy_batches_match_the_tensor_in_memory(store):
    eager, path = store
    normalizer = Normalizer.fit(eager)
    x = normalizer.normalize(eager.to_tensor())
    mask = eager.mask()
    memory = TensorBatches(torch.where(mask, x, torch.zeros_like(x)), mask)
    lazy = LazyBatches(FieldDataset.open(path, chunks=3), ["a", "u"], normalizer, pin_memory=True)
    assert lazy.shape == memory.shape and not lazy.pin_memory  # pinning is off on CPU
    idx = torch.tensor([9, 2, 2, 11, 0])
    for got, want in zip(lazy.batch(idx), memory.batch(idx)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    blocks = list(LazyBatches(lazy.dataset, ["a", "u"], normalizer, block_bytes=8 * 96 * 5)
                  .blocks(idx))  # fmt: skip
    assert [len(b[0]) for b in blocks] == [5]
    rows = torch.cat([b[0] for b in LazyBatches(
        lazy.dataset, ["a", "u"], normalizer, block_bytes=8 * 96 * 2).blocks()])  # fmt: skip
    torch.testing.assert_close(rows, memory.x, rtol=0, atol=0)


def scaling_section():
    """The "Data larger than memory" section of docs/scaling.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    assert "## Data larger than memory" in text, "docs/scaling.md lost its data section"
    section = text.split("## Data larger than memory", 1)[1]
    return section.split("\n## ", 1)[0]


def test_docs_examples_and_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    section = scaling_section()
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, "docs/scaling.md", "exec"), namespace)
    assert namespace["prior"].grid.shape == (32, 32)
    commands = [
        line.split("sciml_diffusion.cli ", 1)[1]
        for line in re.findall(r"```bash\n(.*?)```", section, re.S)[0].splitlines()
        if "sciml_diffusion.cli" in line
    ]
    consecutive_files(tmp_path, "era5")  # what the second command reads
    monkeypatch.setattr(io, "LAZY_BYTES", 0)  # every file counts as larger than memory
    readers = []
    init = LazyBatches.__init__
    monkeypatch.setattr(
        LazyBatches, "__init__", lambda self, *a, **k: readers.append(init(self, *a, **k))
    )
    tiny = ["--steps", "2", "--batch-size", "4", "--width", "4", "--modes", "2", "--quiet"]
    for i, command in enumerate(commands):
        argv = [a.strip("'") for a in command.split()]
        argv = [f"run{i}" if a == "run" else a for a in argv if a != "400"]
        argv = [a for a in argv if a != "--steps"] + tiny
        assert main(argv) == 0, command
    assert len(readers) == len(commands) == 2  # both trained from lazy data


def test_files_on_different_grids_do_not_join(tmp_path):
    paths = consecutive_files(tmp_path, "sst")
    other = xr.open_dataset(paths[1], engine="h5netcdf", decode_times=False, mask_and_scale=False)
    moved = other.assign_coords(lon=other["lon"] + 1.0)
    moved["lon"].attrs = other["lon"].attrs
    other.close()
    moved.to_netcdf(tmp_path / "sst_2.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match="cannot join 2 files along 'time'"):
        FieldDataset.open([paths[0], tmp_path / "sst_2.nc"])
