"""Result and error types of the numerics layer (SciPy style)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import OptimizeResult

from .._bindings import BindingError  # noqa: F401  (the one binding error, re-exported)


class ConvergenceError(RuntimeError):
    """The self-consistent equations were not solved at some grid points.

    ``result`` is the :class:`SolveResult` with the ``converged`` mask and
    the diagnostics (unknowns, residuals, iteration counts) at every point.
    """

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


class SolveResult(OptimizeResult):
    """Solution of the self-consistent equations over a grid of bindings.

    Attribute access like :class:`scipy.optimize.OptimizeResult`. Arrays have
    the broadcast shape of the array-valued bindings (``shape``).

    Attributes
    ----------
    value : the deterministic equivalent at each grid point (NaN where not
        converged, which ``converged`` says).
    x : dict ``name -> array`` of the solved unknowns (``kappa``, ``nu`` …;
        at unconverged points the last iterate). Unknowns solved at the
        nodes of an integral are not reported.
    residuals : dict ``"<unknowns>[i]" -> array`` (e.g. ``"kappa[0]"``,
        ``"kappa,nu[1]"``): ``lhs − rhs`` of each equation at ``x``.
    nit : dict ``"<unknowns>" -> array``: iterations per grid point (Newton,
        bisection, inner solves and continuation steps together).
    converged : bool array, True where every group converged on its
        physical branch (and, for integrals, at every node).
    success : ``converged.all()``.
    z : dict ``"<spectral parameter>" -> array`` (e.g. ``"lam"``): the value
        actually used; for a complex one, moved off the real axis to
        ``|Im| ≥ eta × spectral scale``.
    eta : dict, same keys: ``−Im z`` actually used (0 on the real branch).
    quad_error : (with integrals) estimated quadrature error of the value per
        point (absolute): the integrals' error estimates propagated to the value.
    quad_near_zero : (with integrals) bool array, True where the value is zero
        to rounding against its parts (its error is then judged absolutely).
    shape : the broadcast shape of the bindings.
    message : str.
    """

    def __repr__(self):
        keys = ["success", "message", "shape", "converged", "x", "value", "nit", "z", "eta", "quad_error"]
        lines = []
        for k in keys:
            if k in self:
                v = self[k]
                if isinstance(v, dict):
                    v = {kk: _short(vv) for kk, vv in v.items()}
                else:
                    v = _short(v)
                lines.append(f"{k:>10}: {v}")
        return "\n".join(lines)


def _short(v):
    if isinstance(v, np.ndarray) and v.size > 6:
        flat = v.ravel()
        if v.dtype == bool:
            return f"array(shape={v.shape}, {int(flat.sum())} True)"
        return f"array(shape={v.shape}, first={flat[:3]!r})"
    return v
