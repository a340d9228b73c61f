"""Deterministic words → SymPy scalars (``Tr`` and ``Form``).

Words are put in a canonical rotation/orientation so that equal traces
written differently (``Tr[ΣR₁R₂]`` vs ``Tr[R₂ΣR₁]``) become one SymPy object
and cancel or collect in the value.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy import Identity, MatMul

from ..objects import Form, Tr
from ..rewrite.letters import Det, is_identity


@lru_cache(maxsize=65536)
def _srepr(expr):
    """``srepr`` of a letter's matrix (memoised: general-law resolvents carry large
    scalar coefficients, and every rotation of every word is keyed by it)."""
    return sp.srepr(expr)


@lru_cache(maxsize=65536)
def _doit(expr):
    """``expr.doit()`` (memoised: the same large letters recur in many words)."""
    return expr.doit()


@lru_cache(maxsize=65536)
def _transpose(letter):
    return letter.T()


def _transpose_word(word):
    """``transpose_word`` with memoised letter transposes (same result)."""
    return tuple(_transpose(l) for l in reversed(word))


def _key(word):
    return tuple(_srepr(l.expr) for l in word)


@lru_cache(maxsize=65536)
def function_base(M):
    """The symmetric matrix ``S`` if ``M`` is a rational function or power of
    ``S`` alone (``S``, ``S + cI``, inverses, powers, products of those),
    else ``None``. Such letters commute exactly with one another."""
    from sympy import Inverse, MatAdd, MatPow, MatrixSymbol
    if isinstance(M, MatrixSymbol):
        return M if getattr(M, "is_symmetric", False) else None
    if isinstance(M, (Inverse, MatPow)):
        return function_base(M.args[0])
    if isinstance(M, MatAdd):
        bases = {function_base(a) for a in M.args if not _is_scalar_identity(a)}
        return bases.pop() if len(bases) == 1 and None not in bases else None
    if isinstance(M, MatMul):
        c, mats = M.as_coeff_matrices()
        bases = {function_base(a) for a in mats if not isinstance(a, Identity)}
        return bases.pop() if len(bases) == 1 and None not in bases else None
    return None


def _is_scalar_identity(a):
    if isinstance(a, Identity):
        return True
    if isinstance(a, MatMul):
        c, mats = a.as_coeff_matrices()
        return len(mats) == 1 and isinstance(mats[0], Identity)
    return False


def sort_commuting(word):
    """Sort maximal runs of functions of one matrix into a fixed order."""
    out, run, base = [], [], None
    for l in word + (None,):
        b = function_base(l.expr) if l is not None else None
        if b is not None and (base is None or b == base):
            run.append(l)
            base = b
            continue
        out.extend(sorted(run, key=lambda x: _srepr(x.expr)))
        run, base = ([l], b) if b is not None else ([], None)
        if b is None and l is not None:
            out.append(l)
    return tuple(out)


def _product(word):
    """``MatMul(*word).doit()``: ``MatMul.doit`` is ``canonicalize(MatMul(*[a.doit()
    for a in args]))``, so with each letter's ``doit`` memoised the outer one runs
    with ``deep=False`` (identical result)."""
    mats = [l.expr for l in word]
    return MatMul(*[_doit(m) for m in mats]).doit(deep=False) if len(mats) > 1 else mats[0]


@lru_cache(maxsize=16384)
def word_to_scalar(word):
    """``Tr[word]`` of a deterministic word, as ``Form`` when a rotation of
    it is ``1×1`` and as ``Tr`` otherwise."""
    if any(not isinstance(l, Det) for l in word):
        raise TypeError(f"internal: word is not deterministic: {word}")
    kept = tuple(l for l in word if not is_identity(l))
    if not kept:
        return word[0].expr.shape[0] if word else sp.S.One
    word = kept
    rots = []
    for w in (word, _transpose_word(word)):
        for i in range(len(w)):
            r = w[i:] + w[:i]
            rots.append(sort_commuting(r))
    # prefer rotations that are 1×1 (quadratic forms), then a fixed order
    forms = [r for r in rots if r[0].expr.shape[0] == 1 and r[-1].expr.shape[1] == 1]
    if forms:
        # split the best rotation at inner 1×1 boundaries into a product of forms
        best = min(forms, key=lambda r: (-_n_pieces(r), _key(r)))
        out, cur = sp.S.One, []
        for l in best:
            cur.append(l)
            if l.expr.shape[1] == 1:
                out *= Form(_product(tuple(cur)))
                cur = []
        return out
    best = min(rots, key=_key)
    P = _product(best)
    if isinstance(P, Identity):
        return P.shape[0]
    return Tr(P)


def _n_pieces(r):
    return sum(1 for l in r if l.expr.shape[1] == 1)


def words_to_scalar(words):
    out = sp.S.One
    for w in words:
        out *= word_to_scalar(w)
    return out
