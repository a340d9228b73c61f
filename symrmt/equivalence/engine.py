"""The derivation engine: expression → deterministic equivalent.

Pipeline (docs/design.md): scalar expression → random atoms (traces, forms,
variances) → words (``rewrite.expand``) → exact Gaussian-vector averages
(``rewrite.wick``) → canonical cores (``rewrite.canonical``) → one core at a
time replaced by its equivalent (the named rules of ``averaging``, built on
``rules``) → SymPy value and equations. :class:`Derivation` holds the state
of one derivation (``Engine`` is its older name).
"""
from __future__ import annotations

from contextlib import contextmanager

import sympy as sp
from sympy import MatMul

from ..rewrite import canonical
from ..rewrite.expand import expand
from ..rewrite.letters import An, Fn, GRes, Res, word_sources
from ..rewrite.wick import check_mean_independence, split_means, wick
from . import spectral_fn
from .averaging import AVERAGE, canonical_str, check_alone
from .laws import Registry
from .output import words_to_scalar

ASSUMPTIONS = [
    "Gaussian data (rows N(μ, Σ), or X = K^{1/2} Z Σ^{1/2}); random features iid N(0, 1/p); "
    "all random objects independent unless built from one another",
    "first-order deterministic equivalence in the proportional limit (relative errors O(1/d))",
    "traces and forms concentrate: products and ratios of them are evaluated at their equivalents",
    "physical branch of the self-consistent equations (df < min(n, p, …), κ ≥ λ for real λ > 0)",
]


class Derivation:
    """The state of one derivation, and the engine that runs it.

    State (one object per ``deterministic_equivalent`` call; nothing else
    holds any):

    * ``reg`` — the unknown registry (:class:`~symrmt.equivalence.laws.Registry`):
      one group of unknowns and equations per (law, spectral parameter);
    * ``thetas`` — integration variables handed out so far (:meth:`new_theta`);
    * ``variance_mode`` — second order (both Wick pairings kept), set for the
      whole derivation at construction or for a scope by :meth:`variance`;
    * ``contours`` — depth of nested contour integrals (:meth:`contour_of`);
    * ``notes`` — remarks collected along the way;
    * the active-word guard (:meth:`averaging`): a word whose average is
      being taken may not be asked for again inside it (a rule returning its
      input would recurse without end — it is refused by name instead);
    * the features-legacy switch (:meth:`features_legacy`): inside it the
      random-features rule steps aside so that ``features.average_one`` can
      try the single-core rules first;
    * memo tables (:meth:`memo`) for values shared within the derivation.

    Scoped changes go through context managers (``with ctx.variance(): …``,
    ``with ctx.features_legacy(): …``), which restore the previous value on
    exit, also on an exception. The attributes ``variance_mode`` and
    ``_features_legacy`` stay assignable as shims for older callers.

    Averaging itself is :data:`symrmt.equivalence.averaging.AVERAGE`: named
    rules tried in order (:meth:`average_one`)."""

    def __init__(self, variance_mode=False):
        self.thetas = []
        self.reg = Registry()
        self._variance_mode = bool(variance_mode)
        self.notes = []
        self.contours = 0       # depth of contour integrals being derived
        self._active = set()
        self._legacy = False
        self._memo = {}

    # ------------------------------------------------------------ state
    @property
    def variance_mode(self):
        """Whether averages keep both Wick pairings (second order)."""
        return self._variance_mode

    @variance_mode.setter
    def variance_mode(self, value):      # shim: prefer ``with ctx.variance(…)``
        self._variance_mode = bool(value)

    @contextmanager
    def variance(self, on=True):
        """Variance mode (``on``) for the scope of the ``with`` block."""
        saved = self._variance_mode
        self._variance_mode = bool(on)
        try:
            yield self
        finally:
            self._variance_mode = saved

    @property
    def features_legacy_on(self):
        """Whether the random-features rule steps aside (see :meth:`features_legacy`)."""
        return self._legacy

    # shim for ``features.py`` (``eng._features_legacy = True/False``)
    _features_legacy = property(lambda self: self._legacy,
                                lambda self, value: setattr(self, "_legacy", bool(value)))

    @contextmanager
    def features_legacy(self, on=True):
        """The features-legacy switch for the scope of the ``with`` block:
        ``averaging.rule_random_features`` steps aside, so a word with random
        features reaches the single-core rules (``features.average_one``)."""
        saved = self._legacy
        self._legacy = bool(on)
        try:
            yield self
        finally:
            self._legacy = saved

    @contextmanager
    def averaging(self, word):
        """The active-word guard around the average of ``word``."""
        if word in self._active:
            raise NotImplementedError(f"cannot average E[Tr[{canonical_str(word)}]]: the rules return it "
                                      "unchanged (no equivalent for this word)")
        self._active.add(word)
        try:
            yield
        finally:
            self._active.discard(word)

    def new_theta(self):
        """A fresh integration variable ``θ_j`` of this derivation."""
        theta = spectral_fn.new_theta(len(self.thetas))
        self.thetas.append(theta)
        return theta

    def memo(self, name):
        """The memo table ``name`` of this derivation (a dict, created empty)."""
        return self._memo.setdefault(name, {})

    # ------------------------------------------------------------ atoms
    def atom_words(self, atom):
        """Expand a ``Tr``/``Form`` atom into ``(coeff, word)``."""
        from ..rewrite.expand import unstack
        M = unstack(atom.arg)
        out = []
        for c, w in _expand_tagged(M):
            for w2 in split_means(w):
                out.append((c, w2))
        return out

    def term_value(self, coeff, words):
        """``coeff × E[Π Tr words]`` at first order (exact over Gaussian vectors)."""
        check_mean_independence(words)
        total = sp.S.Zero
        for c, ws in wick(list(words)):
            total += coeff * c * self.product_value(ws)
        return total

    def product_value(self, words):
        res = sp.S.One
        for w in words:
            res *= self.word_value(w)
        return res

    def word_value(self, word):
        word = canonical.drop_identities(word)
        if any(isinstance(l, (Fn, An)) for l in word):
            st = canonical.step(word, strict_tags=self.variance_mode)
            if st is not None:
                return sp.Add(*[c * self.word_value(w) for c, w in st])
            return self.fn_value(word)
        return sp.Add(*[c * words_to_scalar(ws) for c, ws in self.reduce(word)])

    def fn_value(self, word):
        """A spectral function as an integral over resolvents: the
        equivalents apply under the integral sign (docs/math.md)."""
        i = next(k for k, l in enumerate(word) if isinstance(l, (Fn, An)))
        self._check_alone_fn(word, word[i])
        theta = self.new_theta()
        consts, integral = spectral_fn.representation(word[i], theta)
        with self.contour_of(word, word[i]) as real:
            total = sp.Add(*[c * self.word_value(word[:i] + ls + word[i + 1:]) for c, ls in consts])
            integrand = sp.Add(*[c * self.word_value(word[:i] + ls + word[i + 1:]) for c, ls in integral])
        return real(total + sp.Integral(integrand, (theta, 0, spectral_fn.upper_limit(word[i]))))

    @contextmanager
    def contour_of(self, word, letter):
        """Track nested contour integrals; yields the map applied to the
        result: ``re`` for the outermost contour integral of a real word (the
        integral is real, its imaginary part rounding), identity otherwise
        (an inner integral is complex: the outer contour's resolvent is in
        its integrand)."""
        analytic = isinstance(letter, An)
        self.contours += analytic
        outer = analytic and self.contours == 1 and _real_word(word)
        try:
            yield (spectral_fn.ContourRe if outer else (lambda v: v))
        finally:
            self.contours -= analytic

    def _check_alone_fn(self, word, letter):
        if letter.core.chain:
            raise NotImplementedError(f"spectral functions of feature-space cores ({letter.core}) are not implemented")

    # ------------------------------------------------------------ reduction
    def reduce(self, word):
        """``E[Tr word]`` as a list of ``(coeff, deterministic words)``."""
        word = canonical.drop_identities(word)
        if not word_sources(word):
            return [(sp.S.One, (word,))]
        st = canonical.step(word)
        if st is not None:
            return [t for c, w in st for t in self._scaled(c, self.reduce(w))]
        # a rule that hands back the word it was given (directly or through others) would
        # recurse without end: refused by name (the active-word guard)
        with self.averaging(word):
            return [t for c, ws in self.average_one(word) for t in self._scaled(c, self.reduce_product(ws))]

    def reduce_product(self, words):
        out = [(sp.S.One, ())]
        for w in words:
            r = self.reduce(w)
            out = [(c1 * c2, w1 + w2) for c1, w1 in out for c2, w2 in r]
        return out

    @staticmethod
    def _scaled(c, terms):
        return [(c * c2, w) for c2, w in terms]

    def average_one(self, word):
        """Average over one random core of the word (others held fixed): the
        first rule of ``averaging.RULES`` that applies."""
        return AVERAGE(self, word)

    def _check_alone(self, word, core):
        """No other letter may depend on this core's sources (``averaging.check_alone``)."""
        check_alone(word, core)


#: the engine is the derivation context (older name, kept for callers)
Engine = Derivation


def _real_word(word):
    """Whether every scalar the word's random letters carry is real (then so
    is the trace of a real function of the cores)."""
    parts = []
    for l in word:
        if isinstance(l, Res):
            parts.append(sp.sympify(l.z))
        elif isinstance(l, Fn):
            parts += [sp.sympify(v) for f in l.factors for v in f]
        elif isinstance(l, An):
            parts += [l.g.expr, *(l.contour or ())]
        elif isinstance(l, GRes):          # pooled/shifted resolvents next to a spectral function
            parts.append(sp.sympify(l.z))
    bound = {v for l in word if isinstance(l, An) for v in l.g.variables}
    return all(not p.has(sp.I) and all(s.is_real for s in p.free_symbols - bound if isinstance(s, sp.Symbol))
               for p in parts)


def _expand_tagged(M):
    """Expand, tagging spectral functions with the top-level product factor
    they come from (see ``rewrite.letters.Fn``)."""
    if isinstance(M, MatMul):
        coeff, mats = M.as_coeff_matrices()
        out = [(coeff, ())]
        for k, a in enumerate(mats):
            ex = expand(a, tag=k)
            out = [(c1 * c2, w1 + w2) for c1, w1 in out for c2, w2 in ex]
        return [(c, canonical.drop_identities(w)) for c, w in out]
    return expand(M, tag=0)


