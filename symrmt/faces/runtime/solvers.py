"""Safeguarded, vectorised solvers of the self-consistent equations and the
driver of ``evaluate``/``solve`` (part of the generated runtime)."""
import numpy as np

from .bindings import BindingError, _prepare
from .matrices import _SEEN, _col
from .spec import SPEC, _equations, _solve_groups, _value
# ---- RUNTIME BEGINS ----
XTOL = 1e-14          # relative Newton step at convergence
MAXITER = 200         # safeguarded Newton iterations per solve
CHUNK = 1 << 18       # array elements per intermediate: cache-sized blocks of the grid


class ConvergenceError(RuntimeError):
    """The self-consistent equations were not solved at some grid point."""


def _take(a, idx):
    a = np.asarray(a)
    return a if a.ndim == 0 or a.shape[0] == 1 else a[idx]


def _newton(fun, x0):
    """Safeguarded Newton for increasing functions, one root per point.

    ``fun(idx, x) -> (F, J, below, valid)``: value, derivative, whether ``x``
    is below the root, whether ``x`` is on the physical branch. A step that
    leaves the bracket ``[lo, hi]`` is replaced by bisection (geometric while
    the bracket spans decades); convergence is accepted on the branch only.
    """
    n = len(x0)
    x, lo, hi = x0.astype(float).copy(), np.zeros(n), np.full(n, np.inf)
    prev, conv, act = np.full(n, np.inf), np.zeros(n, bool), np.arange(n)
    for _ in range(MAXITER):
        if not act.size:
            break
        xa = x[act]
        F, J, below, valid = fun(act, xa)
        lo_a, hi_a = np.where(below, xa, lo[act]), np.where(below, hi[act], xa)
        step = F / J
        xn = xa - step
        inside = np.isfinite(xn) & (xn > lo_a) & (xn < hi_a)
        rel = np.abs(step) / np.abs(xa)
        # at the rounding floor a tiny step stops contracting: accept it
        small = valid & np.isfinite(xn) & ((rel <= XTOL) | ((rel <= 1e-9) & (rel >= 0.9 * prev[act])))
        prev[act] = np.where(inside, rel, np.inf)
        open_hi = ~np.isfinite(hi_a)
        geo = (lo_a > 0) & (hi_a > 4 * lo_a)
        bis = np.where(open_hi, 4 * np.maximum(xa, lo_a),
                       np.where(geo, np.sqrt(lo_a * np.where(open_hi, 1, hi_a)), (lo_a + hi_a) / 2))
        xn = np.where(inside | small, xn, bis)
        collapsed = ~open_hi & (hi_a - lo_a <= XTOL * hi_a) & valid
        xn = np.where(collapsed & ~small, (lo_a + hi_a) / 2, xn)
        x[act], lo[act], hi[act] = xn, lo_a, hi_a
        done = small | collapsed
        conv[act[done]] = True
        act = act[~done]
    return x, conv


def _spectrum(m, what):
    """Eigenvalues and multiplicities ``(s, w)`` of a symmetric matrix value;
    repeated eigenvalues are merged (isotropic or few-level spectra)."""
    if m.kind == "eye":
        return _col(m.a, 1), _col(np.broadcast_to(m.size, m.a.shape), 1).astype(float)
    s = m.a if m.kind == "diag" else np.linalg.eigvalsh((m.a + np.swapaxes(m.a, -1, -2)) / 2)
    s = np.real(s)
    if np.any(s < -1e-12 * np.abs(s).max(initial=0)):
        raise ValueError(f"{what} has a negative eigenvalue {s.min():.3g}; it must be PSD")
    s = np.clip(s, 0, None)
    if s.shape[0] == 1:
        u, cnt = np.unique(s[0], return_counts=True)
        if 2 * len(u) <= s.shape[1]:
            return u[None, :], cnt[None, :].astype(float)
    return s, np.ones_like(s)


def _df(spec, k):
    """``Tr[S(S+k)⁻¹]`` and its derivative in ``k``, per point (the solvers'
    inner loop: few passes over the grid × spectrum array)."""
    s, w = spec
    t = 1 / (s + k[:, None])
    r = s * t
    if w.shape[0] == 1:
        df = r @ w[0]
        r *= t
        return df, -(r @ w[0])
    df = (r * w).sum(-1)
    r *= t
    return df, -(r * w).sum(-1)


def _check_ridge(z, label):
    z = np.asarray(z)
    if np.iscomplexobj(z):
        if np.any(np.imag(z) != 0):
            raise NotImplementedError(f"{label}: complex spectral parameters are not supported by the "
                                      "generated module; use symrmt's de.compile()")
        z = np.real(z)
    if np.any(z < 0):
        raise BindingError(f"{label} must be ≥ 0 (the physical branch is defined for a real ridge ≥ 0)")
    return z.astype(float)


def _not_converged(label, conv, s):
    bad = np.nonzero(~conv)[0]
    if bad.size:
        i = int(bad[0])
        at = ", ".join(f"{k}={v[i]:.6g}" for k, v in s.items() if np.ndim(v) and k in SPEC["scalars"])
        raise ConvergenceError(f"{label} did not converge at {bad.size} grid point(s); first at {at}")


def _wishart(label, z, S, sizes, s):
    """``κ Π_j(1 − df(κ)/m_j) = z`` on the physical branch ``df < min m_j``.

    ``h(κ)`` increases there from 0 to ∞, and ``κ₀ = z + Tr Σ Σ_j 1/m_j``
    lies above the root (``df ≤ Tr Σ/κ``); points off the branch count as
    below the root, so the bracket excludes the spurious roots."""
    z = _check_ridge(z, f"the ridge of {label}")
    n = len(z)
    spec = _spectrum(S, f"the covariance of {label}")
    ms = [np.broadcast_to(np.asarray(m, float), (n,)) for m in sizes]
    mmin = np.min(ms, axis=0)
    trS = np.broadcast_to((spec[0] * spec[1]).sum(-1), (n,))
    if np.any(z == 0):
        rank = np.broadcast_to((spec[1] * (spec[0] > 0)).sum(-1), (n,))
        if np.any((z == 0) & (rank <= mmin)):
            raise BindingError(f"a zero ridge for {label} needs rank Σ > min({', '.join(map(str, sizes))})")

    dim = np.broadcast_to(spec[1].sum(-1), (n,))

    def fun(idx, k):
        sp_ = tuple(_take(a, idx) for a in spec)
        df, ddf = _df(sp_, k)
        # 1 − df/m = ((m − d) + κ Tr[(Σ+κ)⁻¹])/m exactly (d − df = κ Tr[(Σ+κ)⁻¹]):
        # no cancellation at m = d, κ → 0
        gap = k * (sp_[1] / (sp_[0] + k[:, None])).sum(-1)
        fs = [(m[idx] - dim[idx] + gap) / m[idx] for m in ms]
        h, dh = k * np.prod(fs, axis=0), np.prod(fs, axis=0)
        for j, m in enumerate(ms):
            dh = dh - k * ddf / m[idx] * np.prod([f for i, f in enumerate(fs) if i != j] or [1.0], axis=0)
        valid = np.min(fs, axis=0) > 0
        return h - z[idx], dh, ~valid | (h < z[idx]), valid

    k, conv = _newton(fun, z + trS * sum(1 / m for m in ms))
    _not_converged(label, conv, s)
    return k


def _separable(labels, z, S, K, m, sizes, s):
    """``Tr[K(K+ν)⁻¹] = df(κ)``, ``κ Π_j(1 − df/m_j) ν df(κ) = m z``: Newton in
    ``κ`` with ``ν(κ)`` solved inside (implicit derivative ``dν/dκ``)."""
    z = _check_ridge(z, f"the ridge of {labels[0]}")
    n = len(z)
    specS, specK = _spectrum(S, f"the covariance of {labels[0]}"), _spectrum(K, f"the correlation of {labels[1]}")
    m = np.broadcast_to(np.asarray(m, float), (n,))
    ms = [np.broadcast_to(np.asarray(x, float), (n,)) for x in sizes]
    trS = np.broadcast_to((specS[0] * specS[1]).sum(-1), (n,))
    trK = np.broadcast_to((specK[0] * specK[1]).sum(-1), (n,))
    rankK = np.broadcast_to((specK[1] * (specK[0] > 0)).sum(-1), (n,))
    cap = np.min([rankK] + ms, axis=0)

    def inner(idx, t):
        sk = tuple(_take(a, idx) for a in specK)

        def fun(j, v):
            dK, ddK = _df(tuple(_take(a, j) for a in sk), v)
            # 1/Tr[K(K+ν)⁻¹] is increasing and nearly linear in ν
            return 1 / dK - 1 / t[j], -ddK / dK ** 2, dK > t[j], np.ones(len(j), bool)
        v, ok = _newton(fun, trK[idx] / t)
        return v, ok

    def fun(idx, k):
        df, ddf = _df(tuple(_take(a, idx) for a in specS), k)
        valid = np.isfinite(df) & (df > 0) & (df < cap[idx])
        F, J, below = np.full(len(k), np.nan), np.ones(len(k)), ~valid
        if valid.any():
            j = np.nonzero(valid)[0]
            v, _ = inner(idx[j], df[j])
            dK, ddK = _df(tuple(_take(a, idx[j]) for a in specK), v)
            dv = ddf[j] / ddK
            fs = [1 - df[j] / mj[idx[j]] for mj in ms]
            P = np.prod(fs, axis=0) if fs else np.ones(len(j))
            dP = np.zeros(len(j))
            for a, mj in enumerate(ms):
                dP = dP - ddf[j] / mj[idx[j]] * np.prod([f for b, f in enumerate(fs) if b != a] or [1.0], axis=0)
            kj = k[j]
            F[j] = kj * P * v * df[j] - m[idx[j]] * z[idx[j]]
            J[j] = (P + kj * dP) * v * df[j] + kj * P * (dv * df[j] + v * ddf[j])
            below[j] = F[j] < 0
        return F, J, below, valid

    k, conv = _newton(fun, z * m / trK + trS / m + trS * sum((1 / x for x in ms), 0 * z))
    _not_converged(labels[0], conv, s)
    df, _ = _df(specS, k)
    v, ok = inner(np.arange(n), df)
    # ν from the better-conditioned equation: Tr[K(K+ν)⁻¹] = df amplifies the rounding
    # of df by c₁ = df/Tr[νK(K+ν)⁻²] (diverges as ν → 0 when df nears rank K);
    # ν = m z/(κ Π_j(1 − df/m_j) df) by c₂ = 1 + Σ_j df/(m_j − df)
    with np.errstate(all="ignore"):
        dK, ddK = _df(specK, v)
        P, c2 = np.ones(n), np.ones(n)
        for mj in ms:
            P, c2 = P * (1 - df / mj), c2 + np.abs(df / (mj - df))
        v2 = m * z / (k * P * df)
        c1 = np.abs(dK / (v * ddK))
        use = (z > 0) & np.isfinite(v2) & (v2 > 0) & np.isfinite(v) & (c2 < c1)
        v = np.where(use, v2, v)
        ok = ok | use
    _not_converged(labels[1], ok, s)
    return k, v


# ---- driver
def _chunks(size, per_point):
    """Slices of ``range(size)`` with about ``CHUNK / per_point`` points each."""
    step = max(1, CHUNK // max(1, int(per_point)))
    return [slice(i, min(i + step, size)) for i in range(0, size, step)]


def _run(bindings, want_value):
    """Solve on the whole grid (O(d) per point), then check the equations and
    evaluate the value in chunks sized for dense d×d work where a full
    matrix is bound."""
    st = _prepare(bindings)
    s = dict(st.scalars)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for u in SPEC["unknowns"]:
            s[u] = np.empty(st.size)
        for sl in _chunks(st.size, st.dim):
            part = {k: v[sl] for k, v in st.scalars.items()}
            _solve_groups(part, st.mats)
            for u in SPEC["unknowns"]:
                s[u][sl] = part[u]
        out = []

        def run(sl):
            part = {k: v[sl] for k, v in s.items()}
            _check_equations(part, st.mats)
            if want_value:
                out.append(np.broadcast_to(_value(part, st.mats), (sl.stop - sl.start,)))

        # chunks sized for d×d work per point, unless the first chunk shows that
        # the value never forms such a matrix (traces and forms reduce early)
        _SEEN.clear()
        first = _chunks(st.size, st.dim ** 2 if st.dense else st.dim)[0]
        run(first)
        for sl in _chunks(st.size - first.stop, st.dim ** 2 if _SEEN else st.dim):
            run(slice(sl.start + first.stop, sl.stop + first.stop))
    if not want_value:
        return {u: s[u].reshape(st.shape) for u in SPEC["unknowns"]}
    value = np.concatenate(out)
    if np.iscomplexobj(value) and not np.any(np.imag(value)):
        value = np.real(value)
    bad = ~np.isfinite(value)      # NaN, or ±inf (e.g. a 0/0 limit at a zero ridge): never returned as a number
    if np.any(bad):
        i = int(np.nonzero(bad)[0][0])
        at = ", ".join(f"{k}={v[i]:.6g}" for k, v in st.scalars.items() if np.ndim(v))
        raise FloatingPointError(f"the value is not finite at grid index {np.unravel_index(i, st.shape) if st.shape else ()}"
                                 f" ({at}); the equivalent is undefined there (e.g. 0/0 at a zero ridge)")
    return value.reshape(st.shape)


def _check_equations(s, M):
    """The solvers use the structure of each group; the residual of the
    equations as derived confirms that the root is theirs. It is measured
    against the size of the equation's terms, which cancel at the root."""
    for label, terms in _equations(s, M):
        terms = [np.asarray(t) for t in terms]
        res = np.abs(sum(terms))
        scale = sum(np.abs(t) for t in terms)
        if np.any(res > 1e-8 * scale):
            raise ConvergenceError(f"{label}: relative residual {np.max(res / scale):.3g} of the "
                                   "self-consistent equation after solving")
