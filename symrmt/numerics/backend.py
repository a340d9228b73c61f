"""Array backends: float64/complex128 NumPy, or NumPy object arrays of mpmath numbers.

The solvers and kernels are written once with NumPy operations that also
work on object arrays (arithmetic, comparisons, ``where``, ``einsum``,
``sum``); the few operations that do not (elementwise special functions,
``isfinite``, real/imaginary parts, dense linear algebra) go through the
backend. The mpmath backend evaluates every lambdified scalar function
elementwise in mpmath at ``dps`` digits, so precision is kept throughout:
kernels, solver and value.
"""
from __future__ import annotations

from contextlib import nullcontext

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.pycode import MpmathPrinter


class NumpyBackend:
    name = "numpy"
    xtol = 1e-14          # relative Newton step at convergence (quadratic: the error is ~ its square)

    def lambdify(self, args, exprs):
        """Vectorised function of ``args`` returning the list ``exprs``."""
        return sp.lambdify(args, list(exprs), modules="numpy", cse=True, dummify=True)

    def context(self):
        return nullcontext()

    def asarray(self, x, complex_=False):
        x = np.asarray(x)
        return x.astype(complex if complex_ or np.iscomplexobj(x) else float)

    def const(self, x):
        return x

    @staticmethod
    def isfinite(a):
        return np.isfinite(a)

    @staticmethod
    def real(a):
        return np.real(a)

    @staticmethod
    def imag(a):
        return np.imag(a)

    @staticmethod
    def is_complex(a):
        return np.iscomplexobj(a)

    @staticmethod
    def einsum(subscripts, *ops):
        return np.einsum(subscripts, *ops, optimize=True)

    @staticmethod
    def inv(a):
        return np.linalg.inv(a)

    @staticmethod
    def eigh(a):
        return np.linalg.eigh(a)

    def to_float(self, a):
        return np.asarray(a)

    @staticmethod
    def sum_last(v, w=None):
        """``Σ_j v[..., j]`` (weighted by ``w``)."""
        return v.sum(axis=-1) if w is None else v @ w


class _MpmathPrinter(MpmathPrinter):
    """SymPy's mpmath printer, with small integer powers as products
    (``x*x`` is exact like ``x**2`` and costs one mpf multiplication instead
    of ``mpf_pow_int``)."""

    def _print_Pow(self, expr, rational=False):
        b, e = expr.args
        if e.is_Integer and 2 <= int(e) <= 3:
            base = self.parenthesize(b, 100)    # any precedence above Mul: parentheses unless atomic
            return "(" + "*".join([base] * int(e)) + ")"
        if e.is_Integer and -3 <= int(e) <= -2:
            base = self.parenthesize(b, 100)
            return "(1/(" + "*".join([base] * -int(e)) + "))"
        return super()._print_Pow(expr, rational=rational)


class MpmathBackend(NumpyBackend):
    """High-precision backend: object arrays of ``mpf``/``mpc`` at ``dps`` digits."""

    name = "mpmath"

    def __init__(self, dps=50):
        if not (isinstance(dps, (int, np.integer)) and dps >= 15):
            raise ValueError(f"dps must be an integer ≥ 15, got {dps!r}")
        self.dps = int(dps)
        self.xtol = mpmath.mpf(10) ** (-(self.dps - 3))
        self._isfinite = np.frompyfunc(mpmath.isfinite, 1, 1)
        self._re = np.frompyfunc(mpmath.re, 1, 1)
        self._im = np.frompyfunc(mpmath.im, 1, 1)
        self._conv = np.frompyfunc(self._convert, 1, 1)

    def context(self):
        return mpmath.workdps(self.dps)

    def _convert(self, x):
        if isinstance(x, sp.Basic):
            x = sp.N(x, self.dps + 5)
            return mpmath.mpmathify(complex(x) if not x.is_real else str(x))
        return mpmath.mpmathify(x)

    def lambdify(self, args, exprs):
        with self.context():
            f = sp.lambdify(args, list(exprs), modules="mpmath", cse=True, dummify=True,
                            printer=_MpmathPrinter({"fully_qualified_modules": False, "inline": True,
                                                    "allow_unknown_functions": True, "user_functions": {}}))
        nout = len(exprs)
        uf = np.frompyfunc(lambda *a: tuple(f(*a)) if nout > 1 else f(*a)[0], len(args), nout)
        ctx = self.context

        def g(*a):
            with ctx():
                out = uf(*a) if a else f()
            if not a:
                return list(out)
            return list(out) if nout > 1 else [out]
        return g

    def asarray(self, x, complex_=False):
        with self.context():
            a = np.asarray(x, dtype=object)
            a = self._conv(a) if a.ndim else np.array(self._convert(a.item()), dtype=object)
            if complex_:
                a = np.frompyfunc(mpmath.mpc, 1, 1)(a)
            return np.asarray(a, dtype=object)

    def const(self, x):
        with self.context():
            return mpmath.mpf(x) if not isinstance(x, complex) else mpmath.mpc(x)

    def sum_last(self, v, w=None):
        """``Σ_j v[..., j]`` (weighted by ``w``) by ``mpmath.fsum``/``fdot``
        on each row: one rounding per row and no generic ``mpf.__add__``."""
        v = np.asarray(v, dtype=object)
        with self.context():
            if w is None:
                flat = [mpmath.fsum(row) for row in v.reshape(-1, v.shape[-1])]
            else:
                wl = list(w)
                flat = [mpmath.fdot(row, wl) for row in v.reshape(-1, v.shape[-1])]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(v.shape[:-1]) if v.ndim > 1 else out[0]

    def isfinite(self, a):
        return np.asarray(self._isfinite(a), dtype=bool)

    def real(self, a):
        return self._re(a)

    def imag(self, a):
        return self._im(a)

    @staticmethod
    def is_complex(a):
        a = np.asarray(a)
        if a.dtype != object:
            return np.iscomplexobj(a)
        return any(isinstance(v, mpmath.mpc) for v in a.ravel())

    def einsum(self, subscripts, *ops):
        with self.context():
            return np.einsum(subscripts, *[np.asarray(o, dtype=object) for o in ops], optimize=True)

    def inv(self, a):
        a = np.asarray(a, dtype=object)
        out = np.empty_like(a)
        with self.context():
            for idx in np.ndindex(a.shape[:-2]):
                m = mpmath.inverse(mpmath.matrix(a[idx].tolist()))
                out[idx] = np.array(m.tolist(), dtype=object)
        return out

    def eigh(self, a):
        with self.context():
            w, U = mpmath.eigsy(mpmath.matrix(np.asarray(a, dtype=object).tolist()))
            w = np.array([w[i] for i in range(w.rows)], dtype=object)
            U = np.array(U.tolist(), dtype=object)
        order = np.argsort(np.array([float(v) for v in w]))
        return w[order], U[:, order]


def make_backend(backend, dps):
    if backend == "numpy":
        return NumpyBackend()
    if backend == "mpmath":
        return MpmathBackend(dps)
    raise ValueError(f"backend must be 'numpy' or 'mpmath', got {backend!r}")
