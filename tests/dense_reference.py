"""Independent dense reference for tests: evaluates derived values with plain
NumPy linear algebra and solves the self-consistent equations with SciPy's
brentq. Slow and simple on purpose — it shares no code with
``symrmt.numerics`` and serves to check it and the engine.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.optimize import brentq, fsolve
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix

from symrmt.objects import Form, Tr


def mat(M, env):
    """Dense value of a deterministic matrix expression; ``env`` maps matrix
    symbols to arrays and scalar symbols to numbers."""
    if isinstance(M, MatrixSymbol):
        return np.asarray(env[M], dtype=complex if np.iscomplexobj(env[M]) else float)
    if isinstance(M, Identity):
        return np.eye(int(sp.sympify(M.shape[0]).subs(env["_dims"])))
    if isinstance(M, ZeroMatrix):
        r, c = (int(sp.sympify(x).subs(env["_dims"])) for x in M.shape)
        return np.zeros((r, c))
    if isinstance(M, MatAdd):
        return sum(mat(a, env) for a in M.args)
    if isinstance(M, MatMul):
        c, ms = M.as_coeff_matrices()
        out = complex(scal(c, env)) if not c.is_number else complex(c)
        res = None
        for m in ms:
            v = mat(m, env)
            res = v if res is None else res @ v
        out = out * res
        return out.real if np.isrealobj(res) and out.imag.max(initial=0) == 0 and abs(np.imag(out)).max() == 0 else out
    if isinstance(M, Transpose):
        return mat(M.arg, env).T
    if isinstance(M, Inverse):
        return np.linalg.inv(mat(M.arg, env))
    if isinstance(M, MatPow):
        b, s = M.args
        B = mat(b, env)
        s = float(s)
        if s == int(s):
            return np.linalg.matrix_power(B, int(s))
        w, V = np.linalg.eigh((B + B.T) / 2)
        return (V * np.clip(w, 0, None) ** s) @ V.T
    raise TypeError(f"dense_reference: cannot evaluate {M} ({type(M)})")


def scal(e, env):
    e = sp.sympify(e)
    ints = list(e.atoms(sp.Integral))
    if ints:
        outer = [I for I in ints if not any(I != J and I in J.atoms(sp.Integral) for J in ints)]
        reps = {I: sp.sympify(_integral(I, env)) for I in outer}
        e = e.xreplace(reps)
    reps = {}
    for a in e.atoms(Tr, Form):
        v = mat(a.arg, env)
        reps[a] = sp.sympify(complex(np.trace(v)) if isinstance(a, Tr) else complex(v[0, 0]))
    e = e.xreplace(reps)
    e = e.subs({k: v for k, v in env.items() if isinstance(k, sp.Symbol)})
    e = e.subs(env["_dims"])
    v = complex(sp.N(e, 17))
    return v.real if abs(v.imag) < 1e-300 else v


def _integral(I, env):
    from scipy.integrate import quad
    (th, lo, hi), = I.limits
    lo, hi = float(lo), float(hi)

    def f(x, part):
        e2 = dict(env)
        e2[th] = x
        solve_groups(env["_de"], e2, only=th)
        v = scal(I.function, e2)
        return np.real(v) if part == 0 else np.imag(v)
    re = quad(f, lo, hi, args=(0,), epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    im = quad(f, lo, hi, args=(1,), epsabs=1e-13, epsrel=1e-12, limit=200)[0] if env.get("_complex") else 0.0
    return re + 1j * im if im else re


def solve_groups(de, env, only=None):
    """Fill ``env`` with the unknowns' values (``only``: just the groups
    whose spectral parameter depends on that integration variable; without
    it, those are skipped)."""
    for g in de.groups:
        free = sp.sympify(g.z).free_symbols
        if only is None and any(isinstance(s, sp.Dummy) for s in free):
            continue
        if only is not None and only not in free:
            continue
        z = scal(g.z, env)
        if g.kind == "wishart":
            (k,) = g.unknowns
            f = lambda x: scal(g.equations[0].lhs - g.equations[0].rhs, {**env, k: x})
            hi = 1.0
            while f(hi) < 0:
                hi *= 2
            lo = hi
            while f(lo) > 0 and lo > 1e-14:
                lo /= 2
            env[k] = brentq(f, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
        else:
            k, nu = g.unknowns
            e1 = g.equations[0].lhs - g.equations[0].rhs
            e2 = g.equations[1].lhs - g.equations[1].rhs

            def nu_of(kv):
                f = lambda x: scal(e1, {**env, k: kv, nu: x})
                lo, hi = 1e-12, 1.0
                while f(hi) > 0:
                    hi *= 2
                return brentq(f, lo, hi, xtol=1e-15, rtol=1e-15)
            f2 = lambda kv: scal(e2, {**env, k: kv, nu: nu_of(kv)})
            lo, hi = 1e-10, 1.0
            while f2(hi) < 0:
                hi *= 2
            kv = brentq(f2, lo, hi, xtol=1e-15, rtol=1e-15)
            env[k], env[nu] = kv, nu_of(kv)
    return env


def evaluate(de, bindings, dims):
    """``de.value`` at ``bindings`` ({symbol: value}) with ``dims``
    ({dim symbol: int})."""
    env = dict(bindings)
    env["_dims"] = dims
    env["_de"] = de
    solve_groups(de, env)
    return scal(de.value, env)


def kappa_bisection(s, n, lam):
    """Root of ``κ(1 − Σᵢ sᵢ/(sᵢ+κ)/n) = λ`` on the physical branch
    (``df1 < n``), by bisection: the iid-data equation, independent of the
    engine's solvers."""
    lo, hi = lam, lam + s.sum() / n + 10 * (lam + s.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        df1 = np.sum(s / (s + mid))
        # below the physical branch (df1 ≥ n) the root lies above mid
        lo, hi = (mid, hi) if df1 >= n else ((lo, mid) if mid * (1 - df1 / n) > lam else (mid, hi))
    return 0.5 * (lo + hi)
