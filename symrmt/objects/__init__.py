"""Layer 1: the objects users build expressions from."""
from .functionals import Form, Norm, Tr, mdiff
from .matrices import (Covariance, Deterministic, GaussianData, GaussianNoise, I,
                       RandomFeatures, RandomMatrix, SampleCovariance, SampleMean, Stacked,
                       SymrmtMatrix, Vector, random_symbols, sample_covariance, sample_mean, vstack)
from .ops import (Cov, MatrixFunction, Var, as_scalar, cov, matrix_function, ntr, power,
                  sqrt, var)
from .symbols import Scalar, dims, latex_name, scalar

__all__ = [
    "Form", "Norm", "Tr", "mdiff", "Covariance", "Deterministic", "GaussianData", "GaussianNoise", "I",
    "RandomFeatures", "RandomMatrix", "SampleCovariance", "SampleMean", "SymrmtMatrix", "Vector",
    "random_symbols", "sample_covariance", "sample_mean", "Stacked", "vstack", "Cov", "MatrixFunction", "Var", "as_scalar",
    "cov", "matrix_function", "ntr", "power", "sqrt", "var", "Scalar", "dims", "latex_name", "scalar",
]
