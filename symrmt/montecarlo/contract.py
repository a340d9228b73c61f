"""Contraction of a product of factors: its trace, or the explicit product.

A chain ``F₁…F_k`` of ``Dense``/``Diag`` factors is written as a tensor
network: a dense factor carries two indices, a diagonal one a single shared
index, and a batched factor the extra batch index. ``Diag(f, V)`` expands to
``V · diag(f) · Vᵀ``; adjacent ``Vᵀ V`` pairs of one basis cancel *before*
anything is computed (cyclically for a trace), so a chain of functions of one
random core reduces to ``Σᵢ f(eᵢ)g(eᵢ)…`` and never asks for ``V``. What is
left goes to ``numpy.einsum`` with a cached contraction path: e.g.
``Tr[Σ V diag(f) Vᵀ]`` becomes ``Σ_{ab} s_a V_ab² f_b`` at ``O(d²)``, and
``wᵀ V diag(f) Vᵀ w`` contracts ``Vᵀw`` first.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

_BATCH = 0


def _elements(factors, cyclic):
    from .values import Dense  # local: values imports this module

    elems = []
    for f in factors:
        if isinstance(f, Dense):
            elems.append(("A", f.a))
        elif f.basis is None:
            elems.append(("f", f.f))
        else:
            elems += [("V", f.basis), ("f", f.f), ("W", f.basis)]  # W = Vᵀ
    out = []
    for e in elems:
        if out and e[0] == "V" and out[-1][0] == "W" and out[-1][1] is e[1]:
            out.pop()
        else:
            out.append(e)
    if cyclic:
        while len(out) >= 2 and out[0][0] == "V" and out[-1][0] == "W" and out[0][1] is out[-1][1]:
            out = out[1:-1]
    merged = []
    for e in out:
        if merged and e[0] == "f" and merged[-1][0] == "f":
            merged[-1] = ("f", merged[-1][1] * e[1])
        else:
            merged.append(e)
    if cyclic and len(merged) >= 2 and merged[0][0] == "f" and merged[-1][0] == "f":
        merged = [("f", merged[0][1] * merged[-1][1])] + merged[1:-1]
    return [(k, _vectors(x, k == "W") if k in ("V", "W") else x) for k, x in merged]


class _Factored:
    """``V`` (``Vᵀ`` if ``t``) of a basis whose eigenvectors are kept
    factored (``values.Basis._factor``), or of a planning draw's basis (which
    records how it is used): a product ``L·V`` with a thin ``L`` goes through
    :meth:`values.Basis.apply_left`; anything else asks for the matrix
    (:func:`_resolve`)."""

    __slots__ = ("basis", "t")
    ndim = 2

    def __init__(self, basis, t):
        self.basis, self.t = basis, t

    @property
    def shape(self):
        return (self.basis.size, self.basis.size)

    @property
    def T(self):
        return _Factored(self.basis, not self.t)

    def left(self, L):
        """``L·self`` for ``L`` ``(r, d)`` or ``(N, r, d)``."""
        return self.basis.apply_left(L, self.t)

    def array(self):
        v = self.basis.vectors
        return v.T if self.t else v


def _vectors(basis, t):
    factored = getattr(basis, "factored", None)    # values.Basis; test doubles carry .vectors only
    if factored is not None and (basis.on_vectors is not None or factored()):
        return _Factored(basis, t)
    v = basis.vectors
    return v.T if t else v


def _resolve(elems):
    """The elements with every factored eigenbasis as its matrix."""
    if not any(isinstance(x, _Factored) for _, x in elems):
        return elems
    return [(k, x.array() if isinstance(x, _Factored) else x) for k, x in elems]


def _mul(L, x):
    """``L @ x`` (``x`` possibly factored)."""
    return x.left(L) if isinstance(x, _Factored) else L @ x


def _rmul(x, R):
    """``x @ R`` (``x`` possibly factored): ``(Rᵀ xᵀ)ᵀ``."""
    if isinstance(x, _Factored):
        return np.swapaxes(x.T.left(np.swapaxes(R, -1, -2)), -1, -2)
    return x @ R


def _swap(x):
    return x.T if isinstance(x, _Factored) else np.swapaxes(x, -1, -2)


@lru_cache(maxsize=512)
def _path(subs, shapes):
    ops = []
    for s, sh in zip(subs[:-1], shapes):
        ops += [np.broadcast_to(np.empty((), np.uint8), sh), list(s)]  # only shapes matter
    how = "optimal" if len(shapes) <= 5 else "greedy"
    return np.einsum_path(*ops, list(subs[-1]), optimize=how)[0]


def _einsum(elems, cyclic):
    nxt = 1
    first = cur = nxt
    subs, arrays, batched = [], [], False
    for kind, x in elems:
        if kind == "f":
            s = [cur]
            if x.ndim == 2:
                s, batched = [_BATCH, cur], True
        else:
            nxt += 1
            s = [cur, nxt]
            if x.ndim == 3:
                s, batched = [_BATCH, cur, nxt], True
            cur = nxt
        subs.append(s)
        arrays.append(x)
    if cyclic:
        subs = [[first if i == cur else i for i in s] for s in subs]
        out = [_BATCH] if batched else []
    else:
        out = ([_BATCH] if batched else []) + [first, cur]
    key = tuple(tuple(s) for s in subs) + (tuple(out),)
    path = _path(key, tuple(a.shape for a in arrays))
    ops = []
    for a, s in zip(arrays, subs):
        ops += [a, s]
    return np.einsum(*ops, out, optimize=path)


#: a chain whose first (or last) factor has at most this many rows (columns),
#: e.g. the ``uᵀ`` of a form ``uᵀ…w``, is swept factor by factor from that end
_THIN = 8


def _thin_side(elems):
    kind, x = elems[0]
    if kind == "A" and x.shape[-2] <= _THIN:
        return "left"
    kind, x = elems[-1]
    if kind == "A" and x.shape[-1] <= _THIN:
        return "right"
    return None


def _sweep(elems, side):
    """``F₁…F_k`` from a thin end: a form over two eigenbases
    ``uᵀV₁f₁V₁ᵀV₂f₂V₂ᵀw`` costs matrix–vector products (``O(N d²)``) done
    by BLAS, where einsum's batched contraction of the same path is an
    order of magnitude slower. From the right, the transposed chain is swept
    and the result transposed back."""
    if side == "right":
        elems = [(k, x if k == "f" else _swap(x)) for k, x in reversed(elems)]
    L = elems[0][1]
    for kind, x in elems[1:]:
        if kind == "f":
            L = L * (x[:, None, :] if x.ndim == 2 else x)
        elif isinstance(x, _Factored):
            L = x.left(L)
        elif x.ndim == 2 and L.ndim == 3:
            N, r, c = L.shape
            L = (L.reshape(N * r, c) @ x).reshape(N, r, x.shape[-1])
        else:
            L = np.matmul(L, x)
    return np.swapaxes(L, -1, -2) if side == "right" else L


def _same_basis(V, W):
    """``W`` is the transposed view of the eigenvector matrix ``V``."""
    if isinstance(V, _Factored) or isinstance(W, _Factored):
        return (isinstance(V, _Factored) and isinstance(W, _Factored) and V.basis is W.basis
                and not V.t and W.t)
    return (V.ndim == W.ndim == 2 and W.shape == V.shape[::-1] and W.strides == V.strides[::-1]
            and W.__array_interface__["data"][0] == V.__array_interface__["data"][0])


def _sandwich(elems):
    """``F₁…F_k`` with thin, unbatched ends (a form ``uᵀ…w`` or a few such
    forms): the unbatched factors next to each end are contracted into the
    ends first (matrix–vector work; ``uᵀV`` and ``Vᵀw`` of one eigenbasis in
    a single BLAS-3 product ``[u w]ᵀV``), so that a single batched middle
    ``diag(f)`` costs ``O(N d)`` — ``(uᵀV) diag(f_j) (Vᵀw)`` for every grid
    point ``j`` as one matrix product ``f·((Vᵀu)∘(Vᵀw))`` — instead of a
    sweep of ``N`` vectors through ``Vᵀ`` (``O(N d²)``). The same sum,
    associated differently (rounding only). ``None`` when it does not apply."""
    if len(elems) < 3 or elems[0][0] != "A" or elems[-1][0] != "A":
        return None
    L, R = elems[0][1], elems[-1][1]
    if L.ndim != 2 or R.ndim != 2 or L.shape[0] > _THIN or R.shape[1] > _THIN:
        return None
    i, j = 1, len(elems) - 2
    k1, x1 = elems[i]
    kj, xj = elems[j]
    if i < j and k1 == "V" and kj == "W" and _same_basis(x1, xj):
        r = L.shape[0]
        both = _mul(np.concatenate([L, R.T]), x1)     # one pass over V: [uᵀV; wᵀV]
        L, R = both[:r], both[r:].T
        i, j = i + 1, j - 1
    while i <= j and elems[i][1].ndim == (1 if elems[i][0] == "f" else 2):
        kind, x = elems[i]
        L = L * x if kind == "f" else _mul(L, x)
        i += 1
    while j >= i and elems[j][1].ndim == (1 if elems[j][0] == "f" else 2):
        kind, x = elems[j]
        R = x[:, None] * R if kind == "f" else _rmul(x, R)
        j -= 1
    middle = elems[i:j + 1]
    if not middle:
        return L @ R
    if len(middle) == 1 and middle[0][0] == "f":
        f = middle[0][1]                               # (N, d)
        if L.shape[0] == 1 and R.shape[1] == 1:
            return (f @ (L[0] * R[:, 0]))[:, None, None]
        return np.einsum("rk,nk,kc->nrc", L, f, R, optimize=True)
    return _sweep([("A", L)] + middle + [("A", R)], "left")


def _diag_pair(elems):
    """``Tr[diag(a) V diag(b) Vᵀ] = Σ_ij a_i V_ij² b_j = aᵀ(V∘V)b`` (a
    function of a random core against a diagonal deterministic matrix:
    ``Tr[Σ(Σ̂+λ)⁻¹]``) for a cyclic chain ``f V f W`` of one eigenbasis (in
    any rotation): ``V∘V`` once (``O(d²)``), then one matrix–vector or
    matrix product for the whole grid (``O(N d)``), where einsum's batched
    path costs several passes. The same sum, associated differently
    (rounding only). ``None`` when the chain is not of that form."""
    if len(elems) != 4:
        return None
    kinds = "".join(k for k, _ in elems)
    i = (kinds + kinds).find("fVfW")
    if i < 0:
        return None
    (_, a), (_, V), (_, b), (_, W) = (elems + elems)[i:i + 4]
    if not _same_basis(V, W) or a.ndim > 2 or b.ndim > 2:
        return None
    M = V * V
    if a.ndim == 1:
        return b @ (a @ M)                   # the unbatched side first: O(d²) + O(N d)
    if b.ndim == 1:
        return a @ (M @ b)
    return np.einsum("nj,nj->n", a @ M, b)   # both on the grid: one matrix product


def trace(factors):
    """``Tr(F₁…F_k)`` (scalar, or ``(N,)`` if any factor is batched)."""
    elems = _elements(factors, cyclic=True)
    if len(elems) == 1 and elems[0][0] == "f":
        return elems[0][1].sum(axis=-1)
    side = _thin_side(elems)
    if side is not None and len(elems) > 2:   # thin ends: never the fVfW chain of _diag_pair
        out = _sandwich(elems)
        if out is None:
            out = _sweep(elems, side)
        return np.trace(out, axis1=-2, axis2=-1)
    elems = _resolve(elems)
    out = _diag_pair(elems)
    if out is not None:
        return out
    if len(elems) == 1:
        return np.trace(elems[0][1], axis1=-2, axis2=-1)
    return _einsum(elems, cyclic=True)


def product(factors):
    """``F₁…F_k`` as an explicit ``(r, c)`` or ``(N, r, c)`` array."""
    elems = _elements(factors, cyclic=False)
    if len(elems) == 1:
        kind, x = elems[0]
        if kind == "A":
            return x
        out = np.zeros(x.shape + (x.shape[-1],), dtype=x.dtype)
        idx = np.arange(x.shape[-1])
        out[..., idx, idx] = x
        return out
    if len(elems) == 2 and elems[0][0] == elems[1][0] == "A":
        return np.matmul(elems[0][1], elems[1][1])   # one BLAS product (broadcast over the grid)
    side = _thin_side(elems)
    if side is not None and len(elems) > 2:
        out = _sandwich(elems)
        return _sweep(elems, side) if out is None else out
    return _einsum(_resolve(elems), cyclic=False)
