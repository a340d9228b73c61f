"""White-Wishart family: ``Σ̂ = Σ^{1/2}(ZᵀZ/m)Σ^{1/2}`` with free factors
(feature layers) in a product, one unknown ``κ`` per spectral parameter.

Equation (docs/math.md): ``h(κ) = κ Π_j(1 − df(κ)/m_j) = z``. Real ridge:
``h`` is increasing on the physical branch ``df(κ) < min_j m_j`` (each factor
is positive and increasing because ``df`` decreases), from ``h = 0`` at the
branch edge ``κ_min`` (``df(κ_min) = min m_j``, or ``0``) to ``+∞``. Since
``df ≤ Tr Σ/κ``, ``h(κ) ≥ κ − Tr Σ · Σ_j 1/m_j``, so
``κ₀ = z + Tr Σ · Σ_j 1/m_j`` lies above the root: Newton starts there (for
one factor ``h`` is also convex and the iterates decrease monotonically).
Each point keeps a bracket ``[lo, hi]``: a point is *below* the root when it
is off the branch (``df ≥ min m_j``) or ``h < z``; a Newton step that leaves
the bracket is replaced by bisection, and off the branch no Newton step is
taken at all (``h`` has spurious roots there for two or more factors, where an
even number of ``1 − df/m_j`` are negative). Where the derived residual is,
identically in ``df``, the canonical ``κ Π_j(1 − df/m_j) − z`` (checked
symbolically once, :meth:`WishartSystem._stable_stage`), the step uses the
exact identity ``df = d − κ Tr[(Σ+κ)⁻¹]``: ``1 − df/m = ((m − d) + κ
Tr[(Σ+κ)⁻¹])/m`` does not cancel at ``m = d`` as ``z → 0``
(``κ ≈ √(z m/Tr Σ⁻¹)``), and far above the root it steps in log–log
coordinates (:func:`_stable_step`); otherwise it uses the equation as derived
(``lhs − rhs`` and its SymPy derivative). ``z = 0`` gives
``κ(0⁺) = κ_min``, positive when ``rank Σ > min m_j``.

Complex ``z``: Newton in ``κ`` itself, started at ``κ ≈ z + Tr Σ Σ_j 1/m_j``.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ...objects.functionals import Tr
from ...objects.matrices import Covariance
from ..solvers import check_ridgeless, full
from .base import LawSystem, register


@register
class WishartSystem(LawSystem):
    kind = "wishart"
    title = "white Wishart, one unknown per spectral parameter"
    has_python_solver = True

    def __init__(self, group, index, lowering, backend):
        if len(group.unknowns) != 1:
            raise ValueError(f"a 'wishart' group has one unknown, got {tuple(group.unknowns)}")
        F = self._prepare(group, index, lowering, backend)
        if not any(self._zsym in f.free_symbols for f in F) and self.z.free_symbols:
            raise ValueError(f"the equations of the group {self.unknowns} do not contain its "
                             f"spectral parameter z = {self.z} literally")
        Sigma = group.Sigma
        df = group.df()
        self.sizes_exprs = [sp.sympify(m) for m in group.sizes]
        self.newton = self.stage(F + self.jacobian + [df])
        self.df_only = self.stage([df])
        self.sigma = Sigma if isinstance(Sigma, Covariance) else None
        self.setup = self.stage([Tr(Sigma), *self.sizes_exprs])
        self.stable = self._stable_stage(F[0], df)
        self.complex_names = [self.unknowns[0].name]
        self.complex_newton = self.newton

    def _stable_stage(self, F, df):
        """For the real-ridge Newton: a stage giving ``t = Tr[(Σ+κ)⁻¹]``,
        ``t₂ = Tr[(Σ+κ)⁻²]`` and ``d``, used through the exact identity
        ``df(κ) = Tr[Σ(Σ+κ)⁻¹] = d − κ t`` (every eigenvalue, zeros included), so that
        ``1 − df/m = ((m − d) + κ t)/m`` has no cancellation at ``m = d`` as ``κ → 0``.
        Used only if the derived residual is, identically in ``df``, the kind's canonical
        ``κ Π_j(1 − df/m_j) − z`` (checked symbolically here); otherwise ``None``."""
        k = self.unknowns[0]
        D = sp.Dummy("df")
        canon = k * sp.Mul(*[(1 - D / m) for m in self.sizes_exprs]) - self._zsym
        try:
            ok = sp.cancel(sp.together(F.xreplace({df: D}) - canon)) == 0
        except Exception:   # pragma: no cover - a form SymPy cannot cancel: keep the derived residual
            ok = False
        if not ok:
            return None
        Sigma = self.group.Sigma
        d = Sigma.shape[0]
        R = (Sigma + k * sp.Identity(d)).inverse()
        return self.stage([Tr(R), Tr(R * R), sp.sympify(d)])

    # ------------------------------------------------------------ hooks
    def solve_real(self, env, bound, z, opts):
        n = len(z)
        trS, *ms = [full(v, n) for v in self.setup(env, bound)]
        mmin = ms[0]
        for m in ms[1:]:
            mmin = np.where(m < mmin, m, mmin)
        x0 = z + trS * sum(1 / m for m in ms)
        check_ridgeless(self, env, bound, z, mmin, trS)

        def step(e, idx, x):
            if self.stable is not None:
                return _stable_step(self, e, bound, x, z[idx], [m[idx] for m in ms])
            F, J, df = self.newton(e, bound)
            with np.errstate(all="ignore"):
                h = x
                for m in ms:
                    h = h * (1 - df / m[idx])
                off = df >= mmin[idx]
                below = off | (h < z[idx])
                # off the branch the residual can vanish again (a spurious root where
                # two factors 1 − df/m_j are negative): no Newton step there, bisect
                return np.where(off, np.nan, F / J), below

        return self.newton_from_above(env, z, x0, opts, step)

    def scale(self, env, bound):
        """Spectral scale of ``Σ̂``: ``max eig Σ · Π_j (1 + √(d/m_j))²``."""
        be = self.backend
        smax, *ms = self.setup(env, bound)            # Tr Σ ≥ its largest eigenvalue
        if self.sigma is not None and bound.mats.get(self.sigma.name, ("",))[0] == "diag":
            smax = bound.mats[self.sigma.name][1].max()
        d = bound.sizes.get(self.group.Sigma.shape[0]) or 1
        s = smax
        for m in ms:
            s = s * (1 + (be.const(float(d)) / m) ** 0.5) ** 2
        return s

    def initial_guess(self, env, bound, z0):
        """``κ ≈ z + Tr Σ Σ_j 1/m_j`` at large ``|z|``."""
        n = len(z0)
        trS, *ms = [np.broadcast_to(np.asarray(v), (n,)) for v in self.setup(env, bound)]
        return [z0 + trS * sum((1 / m for m in ms), 0 * z0)]

    @classmethod
    def python_solver(cls, b, group, names, label):
        z, S = b.scalar(group.z), b.matrix(group.Sigma)
        sizes = "[" + ", ".join(b.scalar(m) for m in group.sizes) + "]"
        return f"    s[{names[0]!r}] = _wishart({label!r}, {z}, {S}, {sizes}, s)"


def _stable_step(system, e, bound, x, z, ms):
    """Newton step and branch test on the real ridge from ``1 − df(κ)/m = a/m``,
    ``a = (m − d) + κ t``, ``t = Tr[(Σ+κ)⁻¹]`` (exact: ``df = d − κ t``), so no
    digits cancel at ``m = d`` as ``κ → 0`` (where ``κ ≈ √(z m / Tr Σ⁻¹)``).
    ``h = κ Π_j a_j/m_j``, ``h' = Π_j a_j/m_j + κ Σ_j (a_j'/m_j) Π_{i≠j} a_i/m_i``
    with ``a_j' = t − κ t₂``, ``t₂ = Tr[(Σ+κ)⁻²]``; off the branch ⇔ some
    ``a_j ≤ 0`` (``df ≥ m_j``). Returns ``((h − z)/h', below)``."""
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
        # off the branch: NaN, so the bracket bisects. With two or more factors h can
        # return to z where an even number of them is negative (a spurious root, e.g.
        # df > n, p for random features); a small Newton step there must not count as
        # converged
        step = np.where(off, np.nan, step)
        return step, below
