"""Observed series: NaN as missing, padding, and clear errors on bad input."""

import numpy as np
import pytest
import torch

from sciml_diffusion.sde.latent import LatentSDE
from sciml_diffusion.sde.series import (
    ChannelNormalizer,
    ObservedSeries,
    series_from_dataset,
    series_to_dataset,
)


def test_nan_is_missing_and_never_reaches_the_tensors():
    values = torch.tensor([[[1.0, torch.nan], [2.0, 3.0], [torch.nan, torch.nan]]])
    series = ObservedSeries.from_tensors(torch.tensor([0.0, 1.0, 2.0]), values)
    assert torch.equal(series.mask, ~torch.isnan(values))
    assert not torch.isnan(series.values).any()
    assert series.observed.tolist() == [[True, True, False]]
    assert float(series.end[0]) == 1.0 and int(series.num_observed[0]) == 3


def test_from_sequences_pads_different_lengths():
    series = ObservedSeries.from_sequences(
        [(np.array([0.0, 0.5, 1.0]), np.ones((3, 2))), (np.array([0.0, 2.0]), np.ones((2, 2)))]
    )
    assert series.times.shape == (2, 3)
    assert series.observed.tolist() == [[True, True, True], [True, True, False]]
    assert series.end.tolist() == [1.0, 2.0]


def test_dataset_round_trip_keeps_irregular_times():
    series = ObservedSeries.from_sequences(
        [(np.array([0.0, 0.3, 1.0]), np.arange(3.0)[:, None]), (np.array([0.0, 0.7]), [[1], [2]])]
    )
    ds = series_to_dataset(series, channels=["x"])
    assert "obs_time" in ds and np.isnan(ds["obs_time"].values[1, 2])
    back = series_from_dataset(ds)
    assert torch.equal(back.mask, series.mask)
    torch.testing.assert_close(back.values, series.values)
    torch.testing.assert_close(back.times[back.observed], series.times[series.observed])


def test_normalizer_ignores_missing_values():
    values = torch.tensor([[[1.0], [3.0], [torch.nan]], [[5.0], [7.0], [1e9]]])
    mask = torch.tensor([[[True], [True], [False]], [[True], [True], [False]]])
    series = ObservedSeries.from_tensors(torch.tensor([0.0, 1.0, 2.0]), values, mask)
    norm = ChannelNormalizer.fit(series)
    assert float(norm.mean[0]) == pytest.approx(4.0)
    assert float(norm.std[0]) == pytest.approx(np.sqrt(5.0))
    back = norm.denormalize(norm.normalize(series).values)
    torch.testing.assert_close(back[series.mask], series.values[series.mask])


@pytest.mark.parametrize(
    "times, message",
    [
        ([0.0, 0.5, 0.4], "unsorted"),
        ([0.0, 0.5, 0.5], "duplicate"),
        ([0.0, float("inf"), 1.0], "inf"),
    ],
)
def test_bad_times_are_refused(times, message):
    with pytest.raises(ValueError, match=message):
        ObservedSeries.from_tensors(torch.tensor(times), torch.zeros(2, 3, 1))


def test_duplicate_time_at_a_missing_slot_is_allowed():
    values = torch.tensor([[[1.0], [torch.nan], [2.0]]])
    series = ObservedSeries.from_tensors(torch.tensor([0.0, 0.0, 1.0]), values)
    assert series.observed.tolist() == [[True, False, True]]


def test_ragged_sequences_without_mask_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        ObservedSeries.from_tensors([[0.0, 1.0, 2.0], [0.0, 1.0]], torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="different lengths"):
        ObservedSeries.from_tensors(torch.zeros(3), [np.zeros((3, 1)), np.zeros((2, 1))])


def test_values_without_time_and_other_bad_shapes_are_refused():
    values = torch.ones(1, 2, 1)
    with pytest.raises(ValueError, match="NaN time"):
        ObservedSeries.from_tensors(torch.tensor([0.0, torch.nan]), values)
    with pytest.raises(ValueError, match="channel"):
        ObservedSeries.from_tensors(torch.zeros(2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="no observed value"):
        ObservedSeries.from_tensors(torch.zeros(2), torch.full((1, 2, 1), torch.nan))


@pytest.mark.parametrize("latent_dim", [0, -2])
def test_latent_dim_below_one_is_refused(latent_dim):
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        LatentSDE(data_dim=3, latent_dim=latent_dim)


def test_hide_random_keeps_ends_and_hides_about_the_fraction():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(200, 30, 2, generator=g)
    values[:, :3] = torch.nan  # sequences start at slot 3
    series = ObservedSeries.from_tensors(torch.linspace(0, 1, 30), values)
    hidden = series.hide_random(0.25, torch.Generator().manual_seed(1))
    assert torch.equal(hidden.start, series.start) and torch.equal(hidden.end, series.end)
    assert not (hidden.mask & ~series.mask).any()
    torch.testing.assert_close(hidden.values[hidden.mask], series.values[hidden.mask])
    dropped = 1 - hidden.observed.sum() / series.observed.sum()
    assert abs(float(dropped) - 0.25 * 25 / 27) < 0.02  # 2 of 27 slots are always kept
