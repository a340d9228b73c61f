"""Solvers for the self-consistent equations, vectorised over grid points.

Real ridge ``z > 0`` (the physical branch, docs/math.md):

* ``wishart`` — ``h(κ) = κ Π_j(1 − df(κ)/m_j)`` is increasing on the
  physical branch ``df(κ) < min_j m_j`` (each factor is positive and
  increasing because ``df`` decreases), from ``h = 0`` at the branch edge
  ``κ_min`` (``df(κ_min) = min m_j``, or ``0``) to ``+∞``. Since
  ``df ≤ Tr Σ/κ``, ``h(κ) ≥ κ − Tr Σ · Σ_j 1/m_j``, so
  ``κ₀ = z + Tr Σ · Σ_j 1/m_j`` lies above the root: Newton starts there
  (for one factor ``h`` is also convex and the iterates decrease
  monotonically). Each point keeps a bracket ``[lo, hi]``: a point is
  *below* the root when it is off the branch (``df ≥ min m_j``) or
  ``h < z``; a Newton step that leaves the bracket is replaced by
  bisection. Where the derived residual is, identically in ``df``, the
  canonical ``κ Π_j(1 − df/m_j) − z`` (checked symbolically once,
  ``GroupSystem._stable_stage``), the step uses the exact identity
  ``df = d − κ Tr[(Σ+κ)⁻¹]``: ``1 − df/m = ((m − d) + κ Tr[(Σ+κ)⁻¹])/m``
  does not cancel at ``m = d`` as ``z → 0`` (``κ ≈ √(z m/Tr Σ⁻¹)``), and far
  above the root it steps in log–log coordinates (:func:`_stable_step`);
  otherwise it uses the equation as derived (``lhs − rhs`` and its SymPy
  derivative). The bracket guarantees the root is the physical one.
  ``z = 0`` gives ``κ(0⁺) = κ_min``, positive when ``rank Σ > min m_j``.
* ``separable`` — unknowns ``(κ, ν)``. For fixed ``κ``, ``ν`` solves
  ``Tr[K(K+ν)⁻¹] = df(κ)``; ``1/Tr[K(K+ν)⁻¹]`` is increasing and nearly
  linear in ``ν`` (exactly linear for ``K = I``), so Newton on it with a
  bracket ``[0, Tr K/df]`` converges in a few steps. The outer function
  ``κ Π_j(1−df/m_j) · ν(κ) · df(κ)`` is increasing in ``κ`` (``ν·df`` =
  ``Tr[νK(K+ν)⁻¹]`` increases with ``ν``, which increases with ``κ``), and
  the outer step is the ``κ`` component of the full Newton step
  ``J⁻¹F`` — the Schur-complement (implicit-function) step, since the inner
  equation holds.

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
    """Real ``z ≥ 0``: returns ``({name: array}, nit, converged)``."""
    if system.kind == "general":     # the general law's own safeguarded Newton (numerics/system.py)
        return system.solve_general(env, bound, z, opts)
    if system.kind == "separable":
        return _solve_separable(system, env, bound, z, opts)
    return _solve_wishart(system, env, bound, z, opts)


def _setup(system, env, bound, n):
    out = system.setup(env, bound)
    return [full(v, n) for v in out]


def _solve_wishart(system, env, bound, z, opts):
    be = system.backend
    n = len(z)
    trS, *ms = _setup(system, env, bound, n)
    mmin = ms[0]
    for m in ms[1:]:
        mmin = np.where(m < mmin, m, mmin)
    inv_sum = sum(1 / m for m in ms)
    x0 = z + trS * inv_sum
    _check_ridgeless(system, env, bound, z, mmin, trS)
    (k,) = system.unknowns
    x0 = _warm(x0, z, opts.get("warm", {}).get(k.name), be)
    zero = 0 * x0
    inf = zero + be.const(float("inf"))

    def evaluate(idx, x):
        e = take(env, idx)
        e[k.name] = x
        e[system.zname] = z[idx]
        if system.stable is not None:
            return _stable_step(system, e, bound, x, z[idx], [m[idx] for m in ms])
        F, J, df = system.newton(e, bound)
        with np.errstate(all="ignore"):
            h = x
            for m in ms:
                h = h * (1 - df / m[idx])
            below = (df >= mmin[idx]) | (h < z[idx])
            return F / J, below

    x, nit, conv = bracketed_newton(evaluate, x0, zero, inf, be, opts["maxiter"], opts["xtol"])
    return {k.name: x}, nit, conv


def _stable_step(system, e, bound, x, z, ms):
    """Newton step and branch test of a ``wishart`` group on the real ridge from
    ``1 − df(κ)/m = a/m``, ``a = (m − d) + κ t``, ``t = Tr[(Σ+κ)⁻¹]`` (exact:
    ``df = d − κ t``), so no digits cancel at ``m = d`` as ``κ → 0`` (where
    ``κ ≈ √(z m / Tr Σ⁻¹)``). ``h = κ Π_j a_j/m_j``,
    ``h' = Π_j a_j/m_j + κ Σ_j (a_j'/m_j) Π_{i≠j} a_i/m_i`` with
    ``a_j' = t − κ t₂``, ``t₂ = Tr[(Σ+κ)⁻²]``; off the branch ⇔ some ``a_j ≤ 0``
    (``df ≥ m_j``). Returns ``((h − z)/h', below)``."""
    t, t2, d = system.stable(e, bound)
    with np.errstate(all="ignore"):
        a = [(m - d) + x * t for m in ms]
        da = t - x * t2
        f = [aj / m for aj, m in zip(a, ms)]
        P = 1
        for fj in f:
            P = P * fj
        dP = 0
        for j in range(len(ms)):
            term = da / ms[j]
            for i, fi in enumerate(f):
                if i != j:
                    term = term * fi
            dP = dP + term
        h = x * P
        J = P + x * dP
        off = np.zeros(len(x), dtype=bool)
        for aj in a:
            off = off | np.asarray(aj <= 0, dtype=bool)
        below = off | np.asarray(h < z, dtype=bool)
        # Newton in log–log coordinates, κ ← κ (z/h)^{h/(κh')}: exact for h ∝ κ^p, so it
        # crosses the orders of magnitude from κ₀ to κ ≈ √(z m/Tr Σ⁻¹) in a few steps
        # (plain Newton halves κ per step there); quadratic at the root like Newton.
        # Plain Newton where h ≤ 0 (off the branch: the bracket bisects) or z = 0.
        plain = (h - z) / J
        # only where plain Newton would cut κ by over a quarter (far above the root):
        # near the root, and where h − z is at the rounding level of h (n < d, tiny z,
        # κ ≈ κ₀), plain Newton's small steps are the accurate ones
        pos = np.asarray((h > 0) & (z > 0) & (plain > x / 4), dtype=bool)
        r = np.where(pos, z / np.where(pos, h, 1), 1)
        p = np.where(pos, h / np.where(pos, x * J, 1), 1)
        # the solver forms κ − step: a ratio below 1e-8 is clipped (≤ 8 orders per step) so
        # the new iterate keeps ≥ 8 digits; steps near the root are unaffected
        q = r ** p
        q = np.where(q < 1e-8, 1e-8, q)
        step = np.where(pos, x * (1 - q), plain)
        return step, below


def _warm(x0, z, warm, be):
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


def _check_ridgeless(system, env, bound, z, mmin, trS):
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


def _solve_separable(system, env, bound, z, opts):
    be = system.backend
    n = len(z)
    trS, m, trK, rankK, *ms = _setup(system, env, bound, n)
    cap = rankK
    for mj in ms:
        cap = np.where(mj < cap, mj, cap)
    k, nu = system.unknowns
    x0 = z * m / trK + trS / m + trS * sum((1 / mj for mj in ms), 0 * z)
    zero = 0 * x0
    inf = zero + be.const(float("inf"))
    _check_ridgeless(system, env, bound, z, cap, trS)
    nit_inner = np.zeros(n, dtype=int)

    def inner(idx, e, t):
        """ν with Tr[K(K+ν)⁻¹] = t, by Newton on 1/Tr[K(K+ν)⁻¹] − 1/t."""
        def ev(j, v):
            ee = take(e, j)
            ee[nu.name] = v
            dfK, ddfK = system.inner(ee, bound)
            with np.errstate(all="ignore"):
                step = dfK * (1 - dfK / t[j]) / -ddfK
            return step, dfK > t[j]
        v0 = trK[idx] / t
        z0 = 0 * v0
        v, it, ok = bracketed_newton(ev, v0, z0, z0 + be.const(float("inf")), be, opts["maxiter"], opts["xtol"])
        nit_inner[idx] += it
        return v, ok

    def evaluate(idx, x):
        e = take(env, idx)
        e[k.name] = x
        e[system.zname] = z[idx]
        df = full(system.df_only(e, bound)[0], len(idx))
        valid = be.isfinite(df) & (df < cap[idx]) & (df > 0)
        step = zero[idx] + be.const(float("nan"))
        below = ~valid
        if valid.any():
            j = np.nonzero(valid)[0]
            ej = take(e, j)
            v, _ = inner(idx[j], ej, df[j])
            ej[nu.name] = v
            F1, F2, J11, J12, J21, J22, _ = system.newton(ej, bound)
            with np.errstate(all="ignore"):
                det = J11 * J22 - J12 * J21
                step[j] = full((J22 * F1 - J12 * F2) / det, len(j))
                h = x[j] * v * df[j]
                for mj in ms:
                    h = h * (1 - df[j] / mj[idx[j]])
                below[j] = h < m[idx[j]] * z[idx[j]]
        return step, below

    x, nit, conv = bracketed_newton(evaluate, x0, zero, inf, be, opts["maxiter"], opts["xtol"])
    # ν at the final κ
    e = dict(env)
    e[k.name] = x
    e[system.zname] = z
    df = full(system.df_only(e, bound)[0], n)
    ok = be.isfinite(df) & (df < cap)
    v = zero + be.const(float("nan"))
    if ok.any():
        j = np.nonzero(ok)[0]
        v[j], okj = inner(j, take(e, j), df[j])
        ok[j] &= okj
    return {k.name: x, nu.name: v}, nit + nit_inner, conv & ok


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
    ok &= _branch_ok(system.complex_unknowns(U), be)
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
        okn &= _branch_ok(system.complex_unknowns(Un), be)
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
