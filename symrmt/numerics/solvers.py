"""Solvers for the self-consistent equations, vectorised over grid points.

Real ridge ``z > 0`` (the physical branch, docs/math.md): each law family's
own solver (:mod:`symrmt.numerics.laws`: the increasing map, its bracket and
start), built on :func:`bracketed_newton` here — a safeguarded Newton that
keeps a bracket per point and bisects a step that leaves it, so the root found
is the physical one.

Complex ``z`` (``λ = −z`` with ``z = x + iη`` a spectral parameter):
Newton on all unknowns with the SymPy Jacobian, continued in ``η`` from
``η₀ ≫`` spectral scale (where the root near ``κ ≈ λ + Tr Σ Σ_j 1/m_j`` is
the physical one) down to the target, with an adaptive ratio per point: a
step is accepted when Newton converges and every unknown keeps the sign of
``Im λ`` (a Stieltjes transform), otherwise the ratio is reduced.
"""
from __future__ import annotations

import numpy as np

from .result import BindingError

# continuation in η: first ratio, its growth after a success, its cap
RATIO0, GROWTH, MAXRATIO = 10.0, 16.0, 1e8
#: the loosest relative tolerance a user may ask for (``xtol``): a root is then
#: within ~xtol relative (a Newton step that small, or a bisection bracket that
#: narrow), never a visibly wrong one
XTOL_MAX = 1e-6
#: a Newton iteration that stalls (stops contracting) counts as converged only
#: at the rounding floor, below this relative step, whatever ``xtol`` is
STALL_MAX = 1e-9


def take(env, idx):
    """``env`` restricted to the points ``idx`` (grid arrays are 1-D)."""
    return {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim == 1 else v) for k, v in env.items()}


def full(v, n):
    """``v`` as an array over ``n`` points (a scalar is broadcast)."""
    v = np.asarray(v)
    return np.broadcast_to(v, (n,)) if v.ndim == 0 else v


def bracketed_newton(evaluate, x0, lo, hi, be, maxiter, xtol):
    """Safeguarded Newton for an increasing function, one root per point.

    ``evaluate(idx, x) -> (step, below)``: the Newton step (``x − step`` is
    the next iterate) and whether ``x`` lies below the root. Returns
    ``(x, nit, converged)``.
    """
    x, lo, hi = x0.copy(), lo.copy(), hi.copy()
    n = len(x)
    nit = np.zeros(n, dtype=int)
    conv = np.zeros(n, dtype=bool)
    prev = np.full(n, np.inf)
    act = np.arange(n)
    for _ in range(maxiter):
        if not len(act):
            break
        xa = x[act]
        step, below = evaluate(act, xa)
        step = full(step, len(act))
        below = np.asarray(below, dtype=bool)
        lo_a = np.where(below, xa, lo[act])
        hi_a = np.where(below, hi[act], xa)
        with np.errstate(all="ignore"):
            xn = xa - step
            ok = be.isfinite(xn) & (xn >= lo_a) & (xn <= hi_a)
            # bisection: geometric across orders of magnitude; expansion while no upper bound is known
            inf_hi = ~be.isfinite(hi_a)
            geometric = (lo_a > 0) & (hi_a > 4 * lo_a)
            mid = np.where(geometric, (lo_a * hi_a) ** 0.5, (lo_a + hi_a) / 2)
            bis = np.where(inf_hi, 4 * np.where(xa > lo_a, xa, lo_a), mid)
            # a step below tolerance is accepted even if rounding puts it a hair outside the bracket
            rel = np.asarray(abs(step) / abs(xa), dtype=float)
            small = be.isfinite(xn) & converged_step(rel, prev[act], xtol)
            prev[act] = np.where(ok, rel, np.inf)
            xn = np.where(ok | small, xn, bis)
            collapsed = ~inf_hi & (hi_a - lo_a <= xtol * abs(hi_a))
        xn = np.where(collapsed & ~small, (lo_a + hi_a) / 2, xn)
        x[act], lo[act], hi[act] = xn, lo_a, hi_a
        nit[act] += 1
        done = small | collapsed
        conv[act[done]] = True
        act = act[~done]
    return x, nit, conv


# ------------------------------------------------------------------ real branch
def solve_real(system, env, bound, z, opts):
    """Real ``z ≥ 0``: returns ``({name: array}, nit, converged)`` (the law's own solver)."""
    return system.solve_real(env, bound, z, opts)


def warm_start(x0, z, warm, be):
    """Start Newton at a double-precision root where one is known for these
    very ``z`` (``opts["warm"] = {name: (z, x)}``, the mpmath backend):
    quadratic convergence then needs ~3 steps to 50–80 digits instead of a
    cold start's 5–8. Only the start changes: the bracket, the steps and the
    stopping rule are those of the full-precision equation."""
    if warm is None or be.name != "mpmath":
        return x0
    zf, xf = (np.asarray(a) for a in warm)
    if zf.shape != (len(z),) or xf.shape != (len(z),) or zf.dtype.kind == "c" or xf.dtype.kind == "c":
        return x0
    zz = np.array([float(v) for v in z])
    ok = np.isfinite(xf) & (xf > 0) & (np.abs(zz - zf) <= 1e-12 * np.abs(zz))
    if not ok.any():
        return x0
    out = x0.copy()
    for i in np.nonzero(ok)[0]:
        out[i] = be.const(float(xf[i]))
    return out


def check_ridgeless(system, env, bound, z, mmin, trS):
    """``z = 0`` is allowed only where ``κ(0⁺) > 0``, i.e. ``rank Σ > min m_j``."""
    zero = z == 0
    if not zero.any():
        return
    idx = np.nonzero(zero)[0]
    e = take(env, idx)
    tiny = trS[idx] * 1e-13
    e[system.unknowns[0].name] = tiny
    e[system.zname] = z[idx]
    rank = full(system.df_only(e, bound)[0], len(idx))
    bad = rank <= mmin[idx] * (1 + 1e-9)
    if bad.any():
        i = idx[np.nonzero(bad)[0][0]]
        raise BindingError(
            f"binding {system.zlabel!r}: the ridge {system.zlabel} = 0 (grid index {i}) has κ(0⁺) = 0 here "
            f"because rank Σ ≤ min(sizes) = {int(mmin[i])}; use {system.zlabel} > 0")


# ------------------------------------------------------------------ complex branch
def _solve_small(J, F, k):
    if k == 1:
        return [F[0] / J[0]]
    if k == 2:
        a, b, c, d = J
        det = a * d - b * c
        return [(d * F[0] - b * F[1]) / det, (a * F[1] - c * F[0]) / det]
    Jm = np.stack([np.broadcast_to(j, np.shape(F[0])) for j in J], axis=-1).reshape(-1, k, k)
    Fv = np.stack([np.broadcast_to(f, np.shape(F[0])) for f in F], axis=-1).reshape(-1, k, 1)
    s = np.linalg.solve(Jm, Fv)[..., 0]
    return [s[:, i] for i in range(k)]


def _newton_complex(system, env, bound, idx, U, z, maxiter, xtol):
    """Plain Newton from ``U`` at ``z`` on the points ``idx``; returns (U, ok, nit)."""
    be = system.backend
    names = system.complex_names
    k = len(names)
    U = [u.copy() for u in U]
    n = len(idx)
    ok = np.zeros(n, dtype=bool)
    nit = np.zeros(n, dtype=int)
    prev = np.full(n, np.inf)
    act = np.arange(n)
    for _ in range(maxiter):
        if not len(act):
            break
        e = take(env, idx[act])
        for u, name in zip(U, names):
            e[name] = u[act]
        e[system.zname] = z[act]
        out = system.complex_newton(e, bound)
        with np.errstate(all="ignore"):
            steps = _solve_small(out[k:k + k * k], out[:k], k)
            rel = np.zeros(len(act))
            finite = np.ones(len(act), dtype=bool)
            for i in range(k):
                s = full(steps[i], len(act))
                U[i][act] = U[i][act] - s
                finite &= be.isfinite(U[i][act])
                rel = np.maximum(rel, np.asarray(abs(s) / abs(U[i][act]), dtype=float))
        done = finite & converged_step(rel, prev[act], xtol)
        prev[act] = rel
        nit[act] += 1
        ok[act[done]] = True
        act = act[~done & finite]
    return U, ok, nit


def converged_step(rel, prev, xtol):
    """Relative Newton step below ``xtol``, or stalled at the rounding floor.

    Where the residual is a sum with cancellations (``df`` inside a gap of
    the spectrum) its rounding error can exceed ``xtol`` times the Jacobian;
    Newton then stops contracting. Quadratic convergence has ended at the
    noise floor once a small step (``< 1e-9`` relative) no longer contracts
    (a linearly converging Newton, at a near-double root, still contracts by
    about 1/2 per step and is left to reach ``xtol``). A step also counts
    as converged when the last two show quadratic convergence,
    ``rel ≤ C·prev²`` with ``C = rel/prev² ≤ 1e3``, and the error they
    predict after it, ``C·rel²``, is below ``xtol`` (a linear rate never
    passes this test). The stall allowance is
    fixed (``STALL_MAX``), not scaled by ``xtol``, and ``xtol`` itself is
    capped at ``XTOL_MAX`` by the caller: no option can make a large step
    count as convergence.
    """
    xtol = float(xtol)
    with np.errstate(all="ignore"):
        # quadratic convergence seen (rel ≤ C·prev², C ≤ 1e3) predicts the next error C·rel² ≤ xtol
        quad = (rel <= 1e3 * prev * prev) & (rel * rel * rel <= xtol * prev * prev) & (rel < 1e-3) & np.isfinite(prev)
    return (rel <= xtol) | quad | ((rel <= STALL_MAX) & (rel >= 0.9 * prev))


def solve_complex(system, env, bound, z, eta_floor, opts):
    """Complex ``z`` (``Im z ≠ 0``): continuation in ``η = −Im z`` (module doc)."""
    be = system.backend
    n = len(z)
    flip = np.asarray(be.imag(z) > 0, dtype=bool)
    zc = np.where(flip, _conj(z, be), z)
    re, eta_t = be.real(zc), -be.imag(zc)
    scale = full(system.scale(env, bound), n)
    eta0 = 10 * (scale + abs(re))
    eta0 = np.where(eta0 > eta_t, eta0, eta_t)
    i1 = be.const(1j)
    z0 = re - i1 * eta0
    U0 = system.initial_guess(env, bound, z0)
    U, ok, nit = _newton_complex(system, env, bound, np.arange(n), U0, z0, 60, opts["xtol"])
    ok &= system.branch_ok(U)
    cur = eta0.copy()
    ratio = np.full(n, RATIO0)
    failed = ~ok
    act = np.nonzero(ok & (cur > eta_t))[0]
    rounds = 0
    while len(act) and rounds < 10 * opts["maxiter"]:
        rounds += 1
        nxt = cur[act] / np.asarray(ratio[act]).astype(float)
        nxt = np.where(nxt > eta_t[act], nxt, eta_t[act])
        Ua = [u[act] for u in U]
        Un, okn, it = _newton_complex(system, env, bound, act, Ua, re[act] - i1 * nxt, 12, opts["xtol"])
        okn &= system.branch_ok(Un)
        nit[act] += it
        good, bad = act[okn], act[~okn]
        for u, un in zip(U, Un):
            u[good] = un[okn]
        cur[good] = nxt[okn]
        ratio[good] = np.minimum(ratio[good] * GROWTH, MAXRATIO)
        ratio[bad] = np.sqrt(ratio[bad])
        dead = bad[ratio[bad] < 1.0001]
        failed[dead] = True
        act = np.nonzero(~failed & (cur > eta_t))[0]
    failed |= cur > eta_t
    U = [np.where(flip, _conj(u, be), u) for u in system.complex_unknowns(U)]
    return {s.name: u for s, u in zip(system.unknowns, U)}, nit, ~failed


def _conj(a, be):
    if a.dtype == object:
        import mpmath
        return np.frompyfunc(mpmath.conj, 1, 1)(a)
    return np.conj(a)


def _branch_ok(U, be):
    """Every unknown has ``Im u ≤ 0`` (``Im λ < 0`` side), up to rounding."""
    ok = np.ones(len(U[0]), dtype=bool)
    for u in U:
        ok &= np.asarray(be.imag(u) <= 1e-10 * abs(u), dtype=bool) & be.isfinite(u)
    return ok
