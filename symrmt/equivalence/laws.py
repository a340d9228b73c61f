"""Unknowns and self-consistent equations, one block per (law, spectral
parameter) — and the registry of law families (keyed by kind).

The equations themselves live with their law: one module per family in
:mod:`symrmt.laws` (``wishart``, ``separable``, ``pooled``), each a
:class:`symrmt.laws.base.Law` that registers itself here with
:func:`register_law`. This module holds only the registry and the
bookkeeping of groups (one group per core law and spectral parameter; the
same law at the same ``z`` — e.g. two independent copies — shares its
unknowns). Imports go from the law modules down into this layer, never up.

For data ``X = K^{1/2} Z Σ^{1/2}`` with ``m`` samples (normalisation
``1/m``) the data side ``(XᵀX/m + z)⁻¹ ≃ (κ/z)(Σ+κ)⁻¹`` and the Gram side
``(XXᵀ/m + z)⁻¹ ≃ (ν/z)(K+ν)⁻¹`` share one pair ``(κ, ν)``:

    Tr[K(K+ν)⁻¹] = Tr[Σ(Σ+κ)⁻¹] = df,    κ ν df = m z.

With ``K = I`` the second unknown is explicit, ``ν = (m − df)/df``, and
the pair reduces to docs/math.md's ``κ(1 − df/m) = z``, i.e. ``κ = z S_W(−df/d)``
with ``S_W(w) = 1/(1 + (d/m) w)``. Feature layers ``F_l`` (``d_l × p_l``)
between the data and the ridge multiply S-transforms: the data level sees
the ridge ``κ₁ = κ Π_l (1 − df/p_l)`` and ``κ`` is the ridge seen by ``Σ``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .result import unknown_symbol

# ------------------------------------------------------------------ registry
#: kind → law family (a :class:`symrmt.laws.base.Law` instance), in registration order
FAMILIES = {}


def register_law(law):
    """Add a law family (an instance, or a class that is instantiated) under
    ``law.kind``. A kind already registered by another law is refused."""
    if isinstance(law, type):
        law = law()
    kind = getattr(law, "kind", None)
    if not kind or not isinstance(kind, str):
        raise TypeError(f"register_law: {law!r} needs a string 'kind'")
    old = FAMILIES.get(kind)
    if old is not None and type(old) is not type(law):
        raise ValueError(f"register_law: a law of kind {kind!r} is already registered "
                         f"({type(old).__name__})")
    FAMILIES[kind] = law
    return law


def unregister_law(kind):
    """Remove the law family ``kind`` (e.g. a test's toy law); returns it."""
    return FAMILIES.pop(kind)


def family(kind):
    """The law family registered under ``kind`` (``NotImplementedError`` naming it if none)."""
    try:
        return FAMILIES[kind]
    except KeyError:
        raise NotImplementedError(f"no law family of kind {kind!r} is registered "
                                  f"(registered: {', '.join(FAMILIES) or 'none'})") from None


def family_for_core(core):
    """The law family whose ``applies(core)`` holds; the family registered
    last wins, so a specialised law registered after a general one takes
    precedence. ``NotImplementedError`` naming the core if none applies."""
    for law in reversed(list(FAMILIES.values())):
        if law.applies(core):
            return law
    raise NotImplementedError(f"no registered law family applies to the core {core} "
                              f"(registered: {', '.join(FAMILIES) or 'none'})")


def family_for_object(obj):
    """The law family that samples the random object ``obj`` (its
    ``samples(obj)`` holds; last registered first), or ``None``."""
    for law in reversed(list(FAMILIES.values())):
        if law.samples(obj):
            return law
    return None


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
    """The groups of unknowns of one derivation. Each group is a dict built
    by its law family (``Law.equations``) with at least ``group`` (the
    :class:`~.result.UnknownGroup`), ``order``, ``law`` (the family) and, for
    a one-core law, ``kappa``, ``nu``, ``k1``, ``iid``, ``Kmat``; the general
    law's have ``general=True``, ``delta``, ``rho``, ``R``, ``weights``."""

    def __init__(self):
        self._groups = {}
        self._count = 0

    def next_index(self):
        """A fresh index for the dummies of a new group."""
        self._count += 1
        return self._count

    def _key(self, core):
        X = core.data
        law = family_for_core(core)
        return (law.kind, X.Sigma, X.K, core.m, tuple(F.shape for F in core.chain)) + law.key_extra(core)

    def side(self, core, z):
        key = (self._key(core), sp.sympify(z))
        if key not in self._groups:
            law = family_for_core(core)
            g = law.equations(self, core, sp.sympify(z))
            g.setdefault("law", law)
            g.setdefault("order", self._count)
            self._groups[key] = g
        g = self._groups[key]
        return g["law"].side(core, g)

    def groups(self):
        return [g["group"] for g in sorted(self._groups.values(), key=lambda g: g["order"])]

    def general(self, blocks, B, z):
        """The general one-point law (docs/math.md) for ``(Σ_k c_k Σ̂_k + B + z)⁻¹``:
        ``R = (Σ_k c_k ρ_k Σ_k + B + z)⁻¹``, unknowns ``δ_k`` with
        ``δ_k = c_k Tr[Σ_k R]/n_k`` and ``ρ_k = 1/(1+δ_k)`` (iid rows) or
        ``ρ_k = Tr[K_k(I+δ_kK_k)⁻¹]/n_k``. Returns a dict with ``R`` (the
        matrix), ``delta``, ``rho`` (lists over blocks) and ``weights``.
        The equations are built by the ``general`` family
        (:mod:`symrmt.laws.pooled`); every block's own family must declare
        that it is a block of this law (``Law.pools``)."""
        z = sp.sympify(z)
        d0 = blocks[0][0].dim
        for core, _ in blocks[1:]:
            if sp.sympify(core.dim - d0) != 0:
                raise ValueError(f"the blocks of a pooled sum must have the same number of columns: "
                                 f"{blocks[0][0].data.name} has {d0}, {core.data.name} has {core.dim}")
        if B is not None and sp.sympify(B.shape[0] - d0) != 0:
            raise ValueError(f"the deterministic shift {B} ({B.shape[0]}×{B.shape[1]}) does not match the "
                             f"{d0} columns of {blocks[0][0].data.name}")
        for core, _ in blocks:
            law = family_for_core(core)
            if not law.pools:
                raise NotImplementedError(
                    f"the core {core} (law {law.kind!r}) inside a pooled sum or a shifted resolvent: its law "
                    "is not declared a block of the general one-point law")
        key = ("general", tuple((c.data.Sigma, c.data.K, c.m, sp.sympify(w)) for c, w in blocks), B, z)
        if key not in self._groups:
            law = family("general")
            g = law.general_equations(self, blocks, B, z)
            g.setdefault("law", law)
            g.setdefault("order", self._count)
            self._groups[key] = g
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
        # a one-core law with δ's of its own (projected_pooled: δ_k and κ): δ_k, unless taken
        taken = set(sub.values())
        for i, g in enumerate(kg, 1):
            for j, dl in enumerate(g.get("delta") or (), 1):
                s = unknown_symbol("delta", j if len(kg) == 1 else f"{i}{j}")
                if s not in taken:
                    sub[dl] = s
                    taken.add(s)
        return sub


def gram_side(core):
    """``NotImplementedError`` for the Gram side of a feature chain (shared by the families)."""
    if core.side == "gram" and core.chain:
        raise NotImplementedError(f"Gram side of a feature chain: {core}")

