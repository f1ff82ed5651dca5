"""The field data layer: grids, data sets on disk, normalisation, sensors, random fields.

Every other part of the package reads and writes fields through this layer. Nothing here
imports from the model packages.
"""

from sciml_diffusion.fields.dataset import FieldDataset, spatial_dims
from sciml_diffusion.fields.grf import GaussianRandomField
from sciml_diffusion.fields.grid import Grid, resample
from sciml_diffusion.fields.io import open_dataset, save_dataset
from sciml_diffusion.fields.normalize import Normalizer
from sciml_diffusion.fields.sensors import Observations, SensorOperator

__all__ = [
    "FieldDataset",
    "GaussianRandomField",
    "Grid",
    "Normalizer",
    "Observations",
    "SensorOperator",
    "open_dataset",
    "resample",
    "save_dataset",
    "spatial_dims",
]
