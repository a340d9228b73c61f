"""What a Monte Carlo run estimates, and from which per-draw observables.

Without ``Var``/``Cov`` the estimand is ``E[expr]``: one observable,
``expr`` itself, averaged over draws.

With them, the expression must read ``A + F(M₁, …, M_k)``: ``A`` (the
terms free of ``Var``/``Cov``) is averaged over draws as above, and ``F`` is
any smooth function of the moments ``M_j = Var[e_j]`` or ``Cov[a_j, b_j]``
and of deterministic quantities (bound scalars, traces of deterministic
matrices). ``Var`` is estimated by the unbiased sample variance over draws,
``Cov`` by the unbiased sample covariance; the standard error of the whole
estimate comes from the delete-one jackknife, which for a sample variance
agrees with the fourth-moment formula ``(m₄ − m₂²)/T`` to leading order.
A ``Var`` multiplied by a random quantity, or nested in another one, is
refused with ``NotImplementedError``: its meaning would be ambiguous.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..objects.functionals import Form, Tr
from ..objects.ops import Cov, Var, as_scalar


@dataclass
class Estimand:
    expr: sp.Expr
    observables: tuple  # scalar expressions evaluated on every draw
    moments: tuple = ()  # ("var", i) / ("cov", i, j): observable indices
    plain: int = 0  # index of the averaged part A
    combine: object = None  # F: (moments..., deterministic leaves..., scalars...) -> array
    leaves: tuple = ()  # observable indices of the deterministic leaves of F
    scalars: tuple = ()  # names of the bound scalars in F

    @property
    def is_mean(self):
        return not self.moments

    def estimate(self, rows, bound_scalars, dims):
        """``(estimate, sem)`` from ``rows`` ``(T, n_obs, N)`` (moment case)."""
        T = rows.shape[0]
        if T < 3:
            raise ValueError(f"monte_carlo: a variance or covariance needs at least 3 trials, got {T}")
        P = rows[:, self.plain]
        loo = [(T * P.mean(0) - P) / (T - 1)]  # leave-one-out means of A
        full = [P.mean(0)]
        mom_full, mom_loo = [], []
        for m in self.moments:
            a = rows[:, m[1]]
            b = rows[:, m[2]] if m[0] == "cov" else a
            ya, yb = a - a.mean(0), b - b.mean(0)
            S = (ya * yb).sum(0)
            mom_full.append(S / (T - 1))
            mom_loo.append((S - ya * yb * T / (T - 1)) / (T - 2))
        det = [rows[0, i] for i in self.leaves]
        sc = [bound_scalars[k] if k in bound_scalars else float(dims[k]) for k in self.scalars]
        with np.errstate(all="ignore"):
            theta = full[0] + self.combine(*mom_full, *det, *sc)
            theta_i = loo[0] + self.combine(*mom_loo, *det, *sc)
        theta_i = np.broadcast_to(theta_i, P.shape)
        sem = np.sqrt((T - 1) / T * ((theta_i - theta_i.mean(0)) ** 2).sum(0))
        return np.broadcast_to(theta, sem.shape).astype(float), sem


def parse(expr):
    """Split ``expr`` into observables and the way to combine them."""
    expr = as_scalar(expr)
    nodes = sorted(expr.atoms(Var, Cov), key=sp.default_sort_key)
    if not nodes:
        return Estimand(expr, (expr,))
    for nd in nodes:
        for a in nd.args:
            if a.has(Var, Cov):
                raise NotImplementedError(f"monte_carlo: nested variance/covariance {nd} is not supported")
    plain, moment_terms = [], []
    for t in sp.Add.make_args(expr):
        (moment_terms if t.has(Var, Cov) else plain).append(t)
    observables = [sp.Add(*plain)]
    moments, mdummies = [], {}
    for nd in nodes:
        idx = []
        for a in nd.args:
            if a not in observables:
                observables.append(a)
            idx.append(observables.index(a))
        moments.append(("var", idx[0]) if isinstance(nd, Var) else ("cov", idx[0], idx[1]))
        mdummies[nd] = sp.Dummy(f"m{len(mdummies)}")
    F = sp.Add(*moment_terms).xreplace(mdummies)
    leaves = _deterministic_leaves(F, sp.Add(*moment_terms))
    for leaf in leaves:
        if leaf.free_symbols & set(mdummies.values()):
            raise NotImplementedError(f"monte_carlo: a variance/covariance inside the matrix expression "
                                      f"{leaf.xreplace({v: k for k, v in mdummies.items()})} is not supported")
    ldummies = {leaf: sp.Dummy(f"t{i}") for i, leaf in enumerate(leaves)}
    F = F.xreplace(ldummies)
    leaf_idx = []
    for leaf in leaves:
        observables.append(leaf)
        leaf_idx.append(len(observables) - 1)
    syms = sorted(F.free_symbols - set(mdummies.values()) - set(ldummies.values()), key=lambda s: s.name)
    fn = sp.lambdify(list(mdummies.values()) + list(ldummies.values()) + syms, F, modules="numpy")
    return Estimand(expr, tuple(observables), tuple(moments), 0, fn, tuple(leaf_idx),
                    tuple(s.name for s in syms))


def _deterministic_leaves(F, original):
    """Matrix functionals in ``F`` (outside Var/Cov); they must be deterministic."""
    leaves = []
    for node in sp.preorder_traversal(F):
        if isinstance(node, (Tr, Form, sp.Trace)) and node not in leaves:
            if any(getattr(a, "is_random", False) for a in sp.preorder_traversal(node)):
                raise NotImplementedError(
                    f"monte_carlo: in {original}, a variance/covariance is combined with the random "
                    f"quantity {node}; write E[...] terms and Var/Cov terms as separate summands")
            leaves.append(node)
    return leaves
