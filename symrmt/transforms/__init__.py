"""Layer 2: Stieltjes/S-transforms, degrees of freedom."""
from . import stransform
from .stransform import (correlated_samples, from_spectrum, gram, product, psi_from_eigenvalues,
                         rectangular, rescale, wishart)
from .spectral import df1, df2, stieltjes

__all__ = ["stransform", "correlated_samples", "from_spectrum", "gram", "product",
           "psi_from_eigenvalues", "rectangular", "rescale", "wishart", "df1", "df2", "stieltjes"]
