"""sciml_diffusion: generative models of physical fields and stochastic dynamics.

Parts (see ``docs/``):

- :mod:`sciml_diffusion.fields`: the grid-agnostic field data layer (xarray, NetCDF, HDF5),
  sensors and Gaussian random fields.
- :mod:`sciml_diffusion.pdes`: PDE problems that generate benchmark data and give residuals.
- :mod:`sciml_diffusion.diffusion`: function-space diffusion priors on neural operators.
- :mod:`sciml_diffusion.sde`: latent SDEs trained by SDE matching.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
