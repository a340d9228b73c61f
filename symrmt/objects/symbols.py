"""Scalar and dimension symbols, with the project's LaTeX names.

Names such as ``lam`` or ``sigma2`` are convenient to type and to bind
(``f(lam=...)``) but should print as ``λ`` and ``σ²``; the subclass
:class:`Scalar` carries that printing rule so that *every* printer (SymPy's
``latex`` included) shows the Greek form, not just ours.
"""
from __future__ import annotations

import re

import sympy as sp

_GREEK = {
    "lam": "lambda", "lmbda": "lambda", "lambda": "lambda", "alpha": "alpha",
    "beta": "beta", "gamma": "gamma", "delta": "delta", "eps": "epsilon",
    "epsilon": "epsilon", "eta": "eta", "theta": "theta", "kappa": "kappa",
    "mu": "mu", "nu": "nu", "xi": "xi", "rho": "rho", "sigma": "sigma",
    "tau": "tau", "phi": "phi", "chi": "chi", "psi": "psi", "omega": "omega",
    "zeta": "zeta", "iota": "iota",
}


def latex_name(name: str) -> str:
    """LaTeX for a scalar's name: ``lam``→λ, ``lam1``→λ₁, ``sigma2``→σ²,
    ``sigmaT2``/``sigma_T2``→σ_T², ``kappa_1``→κ₁; anything else unchanged.

    A trailing ``2`` on a ``sigma`` stem means a variance (σ²), the
    convention of docs/math.md; on any other stem a trailing digit is an index.
    """
    m = re.fullmatch(r"([A-Za-z_]*[A-Za-z])_?(\d*)", name)
    if not m:
        return sp.latex(sp.Symbol(name))
    letters, digits = m.groups()
    if "_" in letters:
        stem, sub = letters.split("_", 1)
    else:
        stem = next((g for g in sorted(_GREEK, key=len, reverse=True) if letters.startswith(g)), None)
        sub = letters[len(stem):] if stem else ""
    if stem not in _GREEK:
        return sp.latex(sp.Symbol(name))
    base = "\\" + _GREEK[stem]
    if stem == "sigma" and digits == "2":
        return base + (f"_{{{sub}}}" if sub else "") + "^{2}"
    idx = ",".join(x for x in (sub, digits) if x)
    return base + (f"_{{{idx}}}" if idx else "")


class Scalar(sp.Symbol):
    """A scalar parameter (ridge, noise level, …) that prints in Greek."""

    def _latex(self, printer):
        return latex_name(self.name)


def scalar(name: str, complex: bool = False, **assumptions) -> Scalar:
    """A positive real scalar symbol (``complex=True`` for a complex one).

    The binding key is ``name``; LaTeX shows the Greek form (``lam`` → λ).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"scalar: name must be a Python identifier, got {name!r}")
    if complex:
        return Scalar(name, complex=True, **assumptions)
    assumptions.setdefault("positive", True)
    return Scalar(name, real=True, **assumptions)


def dims(names: str):
    """Positive integer dimension symbols, e.g. ``n, d = dims("n d")``.

    Returns a single symbol when one name is given, a tuple otherwise.
    """
    parts = names.replace(",", " ").split()
    if not parts:
        raise ValueError("dims: give at least one name, e.g. dims('n d')")
    for p in parts:
        if not p.isidentifier():
            raise ValueError(f"dims: {p!r} is not a valid name")
    out = tuple(sp.Symbol(p, integer=True, positive=True) for p in parts)
    return out[0] if len(out) == 1 else out


def as_dim(x, what: str):
    """Sympify a dimension; reject non-positive or non-integer ones."""
    x = sp.sympify(x)
    if x.is_number:
        if not (x.is_integer and x > 0):
            raise ValueError(f"{what} must be a positive integer, got {x}")
    elif x.is_positive is False:
        raise ValueError(f"{what} must be positive, got {x}")
    return x
