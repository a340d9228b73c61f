"""Unknowns and self-consistent equations, one block per (law, spectral
parameter).

For data ``X = K^{1/2} Z Σ^{1/2}`` with ``m`` samples (normalisation
``1/m``) the data side ``(XᵀX/m + z)⁻¹ ≃ (κ/z)(Σ+κ)⁻¹`` and the Gram side
``(XXᵀ/m + z)⁻¹ ≃ (ν/z)(K+ν)⁻¹`` share one pair ``(κ, ν)``:

    Tr[K(K+ν)⁻¹] = Tr[Σ(Σ+κ)⁻¹] = df,    κ ν df = m z.

With ``K = I`` the second unknown is explicit, ``ν = (m − df)/df``, and
the pair reduces to docs/math.md's ``κ(1 − df/m) = z``, i.e. ``κ = z S_W(−df/d)``
with ``S_W(w) = 1/(1 + (d/m) w)``. Feature layers ``F_l`` (``d_l × p_l``)
between the data and the ridge multiply S-transforms: the data level sees
the ridge ``κ₁ = κ Π_l (1 − df/p_l)`` and ``κ`` is the ridge seen by ``Σ``.
The same law at the same ``z`` (e.g. two independent copies) shares
unknowns.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import Identity

from ..transforms import stransform as st
from ..transforms.spectral import df1 as _df
from ..objects import Tr
from .result import UnknownGroup, unknown_symbol


@dataclass
class Side:
    """What the rules need for one core at one spectral parameter.

    ``A`` is the population matrix on the resolvent's side and ``kA`` its
    renormalised ridge; ``B``/``kB`` the other side; ``m`` the normalisation;
    ``k1`` the ridge at the data level (differs from ``kA`` with features).
    """
    A: sp.Basic
    kA: sp.Expr
    B: sp.Basic
    kB: sp.Expr
    m: sp.Expr
    k1: sp.Expr
    iid: bool


class Registry:
    def __init__(self):
        self._groups = {}
        self._count = 0

    def _key(self, core):
        X = core.data
        return (X.Sigma, X.K, core.m, tuple(F.shape for F in core.chain))

    def side(self, core, z):
        key = (self._key(core), sp.sympify(z))
        if key not in self._groups:
            self._groups[key] = self._new_group(core, sp.sympify(z))
        g = self._groups[key]
        X = core.data
        if core.side == "gram":
            if core.chain:
                raise NotImplementedError(f"Gram side of a feature chain: {core}")
            return Side(A=g["Kmat"], kA=g["nu"], B=X.Sigma, kB=g["kappa"], m=core.m,
                        k1=g["nu"], iid=isinstance(X.Sigma, Identity))
        return Side(A=X.Sigma, kA=g["kappa"], B=g["Kmat"], kB=g["nu"], m=core.m,
                    k1=g["k1"], iid=g["iid"])

    def _new_group(self, core, z):
        self._count += 1
        X = core.data
        m, Sigma = core.m, X.Sigma
        kappa = sp.Dummy(f"kappa{self._count}", positive=True)
        df = _df(Sigma, kappa)
        sizes = tuple(F.shape[1] for F in core.chain)
        shrink = sp.Mul(*[(1 - df / p) for p in sizes])
        k1 = kappa * shrink
        iid = isinstance(X.K, Identity)
        d = Sigma.shape[0]
        # feature layers: free white factors, S = 1/(1 + (d/p) w) each
        S_feat = st.product(*[st.wishart(d / p) for p in sizes]) if sizes else sp.Lambda(sp.Symbol("w"), 1)
        w_at = -df / d
        if iid:
            Kmat = Identity(m)
            nu = (m - df) / df
            S_W = st.product(st.wishart(d / m), S_feat)
            # κ = z S_W(−df/d)  ⇔  κ / S_W(−df/d) = z
            eqs = (sp.Eq(kappa / S_W(w_at), z, evaluate=False),)
            group = UnknownGroup((kappa,), eqs, z, "wishart", Sigma, (m,) + sizes)
        else:
            if core.ddof == 1:
                raise NotImplementedError("centred sample covariance of correlated samples (K) is not implemented")
            Kmat = X.K
            nu = sp.Dummy(f"nu{self._count}", positive=True)
            # S_K(−df/m) is implicit: = (1 − t)/(ν t), t = df/m, with Tr[K(K+ν)⁻¹]/m = t
            t = df / m
            SK_val, eqK = st.from_spectrum(_df(Kmat, nu) / m, t, nu)
            SK = sp.Lambda(sp.Symbol("w"), SK_val)  # only ever evaluated at −t
            S_W = st.product(st.correlated_samples(d / m, SK), S_feat)
            eqs = (sp.Eq(_df(Kmat, nu), df, evaluate=False),
                   sp.Eq(k1 * nu * df, m * z, evaluate=False))
            self._check_separable(kappa / S_W(w_at), k1 * nu * df / m)
            group = UnknownGroup((kappa, nu), eqs, z, "separable", Sigma, sizes, Kmat, m)
        return dict(kappa=kappa, nu=nu, k1=k1, iid=iid, Kmat=Kmat, group=group, order=self._count)

    @staticmethod
    def _check_separable(a, b):
        """The catalogue's ``κ/S_W(−df/d)`` must equal the two-sided form
        ``κ₁ ν df/m`` (guards the algebra of the two routes)."""
        if sp.simplify(a - b) != 0:
            raise AssertionError(f"internal: S-transform route disagrees: {a} vs {b}")

    def groups(self):
        return [g["group"] for g in sorted(self._groups.values(), key=lambda g: g["order"])]

    def general(self, blocks, B, z):
        """The general one-point law (docs/math.md) for ``(Σ_k c_k Σ̂_k + B + z)⁻¹``:
        ``R = (Σ_k c_k ρ_k Σ_k + B + z)⁻¹``, unknowns ``δ_k`` with
        ``δ_k = c_k Tr[Σ_k R]/n_k`` and ``ρ_k = 1/(1+δ_k)`` (iid rows) or
        ``ρ_k = Tr[K_k(I+δ_kK_k)⁻¹]/n_k``. Returns a dict with ``R`` (the
        matrix), ``delta``, ``rho`` (lists over blocks) and ``weights``."""
        z = sp.sympify(z)
        key = ("general", tuple((c.data.Sigma, c.data.K, c.m, sp.sympify(w)) for c, w in blocks), B, z)
        if key not in self._groups:
            self._count += 1
            d = blocks[0][0].dim
            deltas, rhos, eqs = [], [], []
            for j, (core, w) in enumerate(blocks, 1):
                dl = sp.Dummy(f"delta{self._count}_{j}", positive=True)
                X = core.data
                if X.correlated:
                    if core.ddof == 1:
                        raise NotImplementedError(
                            "centred sample covariance of correlated samples (K) is not implemented")
                    n = X.K.shape[0]
                    rho = Tr(X.K * (Identity(n) + dl * X.K).inverse()) / core.m
                else:
                    rho = 1 / (1 + dl)
                deltas.append(dl)
                rhos.append(rho)
            inner = sp.MatAdd(*[w * r * core.data.Sigma for (core, w), r in zip(blocks, rhos)])
            if B is not None:
                inner = inner + B
            if z != 0:
                inner = inner + z * Identity(d)
            R = inner.inverse()
            for (core, w), dl in zip(blocks, deltas):
                eqs.append(sp.Eq(dl, w * Tr(core.data.Sigma * R) / core.m, evaluate=False))
            group = UnknownGroup(tuple(deltas), tuple(eqs), z, "general", blocks[0][0].data.Sigma,
                                 (B,) if B is not None else ())
            self._groups[key] = dict(general=True, delta=deltas, rho=rhos, R=R, group=group,
                                     order=self._count, weights=[w for _, w in blocks])
        return self._groups[key]

    def naming(self):
        """Final names: ``κ`` (and ``ν``) for one block, ``κ_1, κ_2 …`` else;
        the general law's ``δ`` (``δ_j`` per data block, ``δ_{ij}`` with
        several general groups)."""
        gs = sorted(self._groups.values(), key=lambda g: g["order"])
        kg = [g for g in gs if not g.get("general")]
        gg = [g for g in gs if g.get("general")]
        sub = {}
        for i, g in enumerate(kg, 1):
            idx = None if len(kg) == 1 else i
            sub[g["kappa"]] = unknown_symbol("kappa", idx)
            if not g["iid"]:
                sub[g["nu"]] = unknown_symbol("nu", idx)
        for i, g in enumerate(gg, 1):
            m = len(g["delta"])
            for j, dl in enumerate(g["delta"], 1):
                if len(gg) == 1:
                    idx = None if m == 1 else j
                else:
                    idx = f"{i}{j}" if m > 1 else i
                sub[dl] = unknown_symbol("delta", idx)
        return sub
