"""The derivation engine: expression → deterministic equivalent.

Pipeline (docs/design.md): scalar expression → random atoms (traces, forms,
variances) → words (``rewrite.expand``) → exact Gaussian-vector averages
(``rewrite.wick``) → canonical cores (``rewrite.canonical``) → one core at a
time replaced by its equivalent (``rules``) → SymPy value and equations.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager

import sympy as sp
from sympy import Identity, MatMul

from ..objects import Form, Tr
from ..objects.matrices import GaussianData, RandomFeatures, random_symbols
from ..objects.ops import Cov, Var, as_scalar
from ..rewrite import canonical
from ..rewrite.expand import expand
from ..rewrite.letters import An, Bare, Det, Fn, GRes, Rand, Res, word_matrix, word_sources
from ..rewrite.wick import check_mean_independence, split_means, wick
from . import features, general_law, rules, sample_side, spectral_fn
from .laws import Registry
from .output import words_to_scalar
from .result import DeterministicEquivalent

ASSUMPTIONS = [
    "Gaussian data (rows N(μ, Σ), or X = K^{1/2} Z Σ^{1/2}); random features iid N(0, 1/p); "
    "all random objects independent unless built from one another",
    "first-order deterministic equivalence in the proportional limit (relative errors O(1/d))",
    "traces and forms concentrate: products and ratios of them are evaluated at their equivalents",
    "physical branch of the self-consistent equations (df < min(n, p, …), κ ≥ λ for real λ > 0)",
]


class Engine:
    def __init__(self, variance_mode=False):
        self.thetas = []
        self.reg = Registry()
        self.variance_mode = variance_mode
        self.notes = []
        self.contours = 0       # depth of contour integrals being derived

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
        theta = spectral_fn.new_theta(len(self.thetas))
        self.thetas.append(theta)
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
            yield (sp.re if outer else (lambda v: v))
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
        # recurse without end: refuse it by name instead
        active = self.__dict__.setdefault("_active", set())
        if word in active:
            raise NotImplementedError(f"cannot average E[Tr[{canonical_str(word)}]]: the rules return it "
                                      "unchanged (no equivalent for this word)")
        active.add(word)
        try:
            return [t for c, ws in self.average_one(word) for t in self._scaled(c, self.reduce_product(ws))]
        finally:
            active.discard(word)

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
        """Average over one random core of the word (others held fixed)."""
        if any(isinstance(l, GRes) for l in word):
            # pooled blocks / deterministic shifts: the general law and its lift
            return general_law.average(word, self.reg, self.variance_mode, canonical_str)
        if not getattr(self, "_features_legacy", False) and features.involves_features(word):
            return features.average_one(self, word)   # random features: nested conditioning
        if sample_side.applies(word):
            # X outside XᵀX (XᵀMX, selectors, K-correlated noise, mixed Gram/data): sample-side sources
            return sample_side.average(self, word, canonical_str)
        res = [(i, l) for i, l in enumerate(word) if isinstance(l, Res)]
        if res:
            core = res[0][1].core
            mine = [(i, l) for i, l in res if l.core == core]
            self._check_alone(word, core)
            if core.chain:
                if len(mine) > 1:
                    raise NotImplementedError(
                        f"two resolvents of the feature-space core {core} in one trace "
                        f"({canonical_str(word)}): two-point equivalents with random features are not implemented")
                i, l = mine[0]
                return rules.chain_sandwich(word, i, self.reg.side(core, l.z), l.z, core)
            bares = [i for i, l in enumerate(word) if isinstance(l, Bare) and l.core == core]
            if len(mine) == 1 and len(bares) == 1 and abs(bares[0] - mine[0][0]) in (1, len(word) - 1):
                # Σ̂ (Σ̂+z)⁻¹ = I − z(Σ̂+z)⁻¹ ≃ I − κ(Σ+κ)⁻¹ = Σ(Σ+κ)⁻¹, kept in the stable form
                i, j = sorted((bares[0], mine[0][0]))
                side = self.reg.side(core, mine[0][1].z)
                A = side.A
                P = Det(A * (A + side.kA * Identity(A.shape[0])).inverse())
                if (i, j) == (0, len(word) - 1):
                    return [(sp.S.One, ((P,) + word[1:-1],))]
                return [(sp.S.One, (word[:i] + (P,) + word[j + 1:],))]
            if bares:
                raise NotImplementedError(
                    f"sample covariance {core} appears apart from its resolvent in {canonical_str(word)}")
            if len(mine) == 1:
                i, l = mine[0]
                return rules.one_point(word, i, self.reg.side(core, l.z), l.z)
            if len(mine) == 2:
                (i, l1), (j, l2) = mine
                s1 = rules._SideAt(self.reg.side(core, l1.z), l1.z)
                s2 = rules._SideAt(self.reg.side(core, l2.z), l2.z)
                return rules.two_point(word, i, j, s1, s2, self.variance_mode)
            if core.side == "data" and core.data.correlated and core.ddof is None and not self.variance_mode:
                # correlated rows (K): the lift with sample-side sources (equivalence/sample_side.py)
                return sample_side.average_core(self, word, core.data, canonical_str)
            if core.side != "data" or core.data.correlated:
                raise NotImplementedError(
                    f"{len(mine)} resolvents of {core} in one trace ({canonical_str(word)}): "
                    "k-point equivalents (k ≥ 3) are derivable for data-side cores of iid rows only")
            # k ≥ 3: the block-bidiagonal lift of the general law (docs/math.md)
            return general_law.average(word, self.reg, self.variance_mode, canonical_str, first=mine[0][1])
        bares = [(i, l) for i, l in enumerate(word) if isinstance(l, Bare)]
        if bares:
            core = bares[0][1].core
            if core.chain:
                return [(sp.S.One, (_unfold(word, bares[0][0]),))]
            self._check_alone(word, core)
            idx = [i for i, l in bares if l.core == core]
            return rules.bare_expectation(word, idx, _bare_side(core), first_order=not self.variance_mode)
        feats = [(i, l) for i, l in enumerate(word) if isinstance(l, Rand) and isinstance(l.sym, RandomFeatures)]
        if feats:
            i, l = feats[0]
            partner = next((j for j, m in feats[1:] if m.sym == l.sym and m.t != l.t), None)
            if partner is None:
                raise NotImplementedError(f"unpaired random features {l.sym.name} in {canonical_str(word)}")
            return rules.features_expectation(word, i, partner, l.sym)
        rnd = [l for l in word if isinstance(l, Rand)]
        raise NotImplementedError(
            f"cannot average {canonical_str(word)}: {rnd[0]} appears outside a sample covariance "
            "(data matrices must pair as XᵀX, XXᵀ or sit next to their resolvent)")

    def _check_alone(self, word, core):
        """No other letter may depend on this core's sources."""
        src = core.sources
        for l in word:
            if isinstance(l, (Res, Bare)) and l.core != core and (l.core.sources & src):
                raise NotImplementedError(
                    f"{core} and {l.core} share randomness in {canonical_str(word)}: "
                    "mixed data-space/Gram-space or feature/data resolvents are not implemented")
            if isinstance(l, Rand) and l.sym.uid in src and not (core.chain and l.sym in core.chain):
                raise NotImplementedError(
                    f"{l} appears outside the sample covariance of {core} in {canonical_str(word)}")


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


def _bare_side(core):
    from .laws import Side
    X = core.data
    if core.side == "gram":
        return Side(A=X.K if X.correlated else Identity(core.m), kA=None, B=X.Sigma, kB=None,
                    m=core.m, k1=None, iid=True)
    return Side(A=X.Sigma, kA=None, B=X.K if X.correlated else Identity(core.m), kB=None,
                m=core.m, k1=None, iid=not X.correlated)


def _unfold(word, i):
    """A bare feature core back into ``Fᵀ Σ̂ F`` letters."""
    from ..rewrite.letters import Core
    core = word[i].core
    inner = Core(core.data, core.side, core.chain[:-1], core.ddof)
    F = core.chain[-1]
    return word[:i] + (Rand(F, True), Bare(inner), Rand(F)) + word[i + 1:]


def canonical_str(word):
    try:
        return sp.sstr(word_matrix(word))
    except Exception:  # messages must never fail
        return " ".join(map(str, word))
