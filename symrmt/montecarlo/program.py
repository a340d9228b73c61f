"""Compile the user's SymPy expression into evaluation nodes (once per
process), and evaluate them on one draw.

Spectral cores: for every ``(C + c·I)⁻¹``, real power ``(C + c·I)^s`` and
matrix function ``f(C + c·I)`` the non-identity part ``C`` is a *core*. Every occurrence of a core — also as a
run of factors inside a product, as in ``(1/n)XᵀX·(XᵀX/n + λI)⁻¹``, or as
part of a sum — is evaluated as ``Diag(e, V)`` in its eigenbasis, so shifts,
inverses and powers act on the eigenvalues ``e``, for the whole grid of
shifts at once.

Evaluation follows a :class:`~symrmt.montecarlo.plan.Plan` learnt from one
planning draw (eigenvalues only or eigenvectors, grid blocks).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from sympy import (Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, OneMatrix, Transpose,
                   ZeroMatrix)
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..objects.functionals import Form, Norm, Tr
from ..objects.matrices import GaussianNoise, SampleCovariance, SampleMean, Vector
from ..objects.ops import Cov, MatrixFunction, Var, removable_form
from . import nodes as N
from .bindings import collect
from .plan import make_plan
from ..objects.matrices import Stacked
from .sampler import MNoise, MRandom, MStack, MSampleCovariance, MSampleMean, Sampler, base_objects

def _is_identity_multiple(M):
    if isinstance(M, Identity):
        return True
    if isinstance(M, MatMul):
        _, mats = M.as_coeff_matrices()
        return len(mats) == 1 and isinstance(mats[0], Identity)
    return False


def split_shift(A):
    """``(core_terms, shift_terms)`` of ``A = core + c·I``."""
    terms = A.args if isinstance(A, MatAdd) else (A,)
    shifts = tuple(t for t in terms if _is_identity_multiple(t))
    return tuple(t for t in terms if not _is_identity_multiple(t)), shifts


def _core_key(core_terms):
    """A sum of several terms is keyed by their set; a single product by its
    matrices without the scalar coefficient, so ``(t·C + λ)⁻¹`` with ``t``
    on the grid still diagonalises ``C`` once."""
    if len(core_terms) > 1:
        return frozenset(core_terms)
    term = core_terms[0]
    if isinstance(term, MatMul):
        _, mats = term.as_coeff_matrices()
        return MatMul(*mats) if len(mats) > 1 else mats[0]
    return term


def _deps(expr):
    """Names of the scalar/dimension symbols and whether a random object occurs."""
    names, random = set(), False
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Symbol):
            names.add(node.name)
        elif getattr(node, "is_random", False):
            random = True
    return names, random


class Program:
    """Observables (scalar SymPy expressions) compiled against bindings."""

    def __init__(self, observables, bound, sampling="direct"):
        self.bound = bound
        self._planned = None      # the planning draw, kept for trial 0 (keep_planning_draw)
        self.batched_names = bound.batched
        self.persistent = {}
        self._nodes = {}
        self.cores = {}
        for e in observables:
            self._find_cores(e)
        self.observables = [self.scalar(e) for e in observables]
        rand = set()
        for e in observables:
            rand |= collect(e)[3]
        self.sampler = Sampler(self, base_objects(rand), observables, sampling)  # sampler.gram_groups

    # ------------------------------------------------------------ cores
    def _find_cores(self, expr):
        for node in sp.preorder_traversal(expr):
            base = None
            if isinstance(node, Inverse):
                base = node.arg
            elif isinstance(node, MatPow) and not (node.args[1].is_Integer and node.args[1] > 0):
                base = node.args[0]
            elif isinstance(node, MatrixFunction):
                base = node.arg
            if base is not None:
                core, _ = split_shift(base)
                if core:
                    self.cores.setdefault(_core_key(core), None)

    def _spectral(self, key):
        if self.cores.get(key) is None:
            plain = (self._compile_matrix(key, cores=False) if not isinstance(key, frozenset)
                     else self._add([self.matrix(t) for t in sorted(key, key=sp.default_sort_key)]))
            node = N.MSpectral(plain, key)
            node.random, node.batched = plain.random, plain.batched
            self.cores[key] = node
        return self.cores[key]

    # ------------------------------------------------------------ helpers
    def _flags(self, node, expr):
        names, random = _deps(expr)
        node.random = random
        node.batched = bool(names & self.batched_names)
        return node

    def _add(self, children):
        if len(children) == 1:
            return children[0]
        node = N.MAdd(children)
        node.random = any(c.random for c in children)
        node.batched = any(c.batched for c in children)
        return node

    # ------------------------------------------------------------ scalars
    def scalar(self, e):
        e = sp.sympify(e)
        if e in self._nodes:
            return self._nodes[e]
        node = self._compile_scalar(e)
        self._nodes[e] = node
        return node

    def _compile_scalar(self, e):
        if isinstance(e, MatrixExpr):
            if tuple(e.shape) != (1, 1):
                raise ValueError(f"monte_carlo: expected a scalar expression, got a {e.shape} matrix: {e}")
            e = Form(e)
        if e.is_Number:
            return N.SConst(complex(e) if not e.is_real else float(e))
        if isinstance(e, sp.Symbol):
            if e.name in self.bound.dims:
                return N.SConst(float(self.bound.dims[e.name]))
            return N.SSym(e.name, e.name in self.batched_names)
        if isinstance(e, (Tr, Form, sp.Trace, Norm)):
            child = self.matrix(e.arg)
            node = N.SNorm(child) if isinstance(e, Norm) else N.STrace(child)
            node.random, node.batched = child.random, child.batched
            return node
        if isinstance(e, (Var, Cov)):
            raise NotImplementedError(
                f"monte_carlo: {type(e).__name__} is supported as a term of the expression (possibly "
                f"inside a function of variances and covariances), not inside a per-draw quantity: {e}")
        if hasattr(e, "mc_node"):       # primitives that evaluate themselves (objects/roots.py)
            return e.mc_node(self)
        fn, leaves, syms = _lambdified(e)
        children = [self.scalar(x) for x in leaves] + [self.scalar(s) for s in syms]
        node = N.SFunc(fn, children, e)
        node.random = any(c.random for c in children)
        node.batched = any(c.batched for c in children)
        return node

    # ------------------------------------------------------------ matrices
    def matrix(self, M):
        if M in self._nodes:
            return self._nodes[M]
        node = self._transpose_of_known(M) or self._compile_matrix(M)
        self._nodes[M] = node
        return node

    def _transpose_of_known(self, M):
        """``MTranspose`` of the node already compiled for ``Mᵀ`` when ``M`` is
        a vector-shaped sum or product: SymPy writes ``(ŵ − w̄)ᵀ`` expanded, as
        a separate expression, and without this the form ``(ŵ − w̄)ᵀΣ(ŵ − w̄)``
        would contract the same chains twice per draw (``(Aᵀ)ᵀ = A`` exactly)."""
        if not isinstance(M, (MatAdd, MatMul)) or 1 not in tuple(M.shape):
            return None
        T = _transposed(M)
        if T is None or T == M or T not in self._nodes:
            return None
        return self._wrap(N.MTranspose(self._nodes[T]))

    def _compile_matrix(self, M, cores=True):
        if cores and not isinstance(M, MatAdd) and M in self.cores:
            return self._spectral(M)
        if isinstance(M, MatrixSymbol):
            return self._symbol(M)
        if isinstance(M, Identity):
            return N.MIdentity(self.bound.dim_value(M.shape[0]))
        if isinstance(M, ZeroMatrix):
            return N.MZero(*(self.bound.dim_value(s) for s in M.shape))
        if isinstance(M, OneMatrix):
            return N.MOnes(*(self.bound.dim_value(s) for s in M.shape))
        if isinstance(M, MatAdd):
            return self._matadd(M, cores)
        if isinstance(M, MatMul):
            return self._matmul(M, exclude=None if cores else M)
        if isinstance(M, Transpose):
            return self._wrap(N.MTranspose(self.matrix(M.arg)))
        if isinstance(M, Inverse):
            return self._wrap(N.MInverse(self.matrix(M.arg)))
        if isinstance(M, MatPow):
            base, s = M.args
            if s.is_Integer:
                if s == -1:
                    return self._wrap(N.MInverse(self.matrix(base)))
                return self._wrap(N.MIntPower(self.matrix(base), int(s)))
            if s.is_real is False:
                raise ValueError(f"monte_carlo: the exponent of {M} must be real")
            exp_node = self.scalar(s)
            node = N.MFracPower(self.matrix(base), exp_node, what=f"power {M}")
            node.random = node.child.random or exp_node.random
            node.batched = node.child.batched or exp_node.batched
            return node
        if isinstance(M, MatrixFunction):
            return self._function(M)
        if isinstance(M, Stacked):      # sr.vstack: blocks concatenated (sampler.MStack)
            return MStack([self.matrix(b) for b in M.args])
        raise NotImplementedError(f"monte_carlo: cannot evaluate the matrix expression {M} "
                                  f"({type(M).__name__})")

    def _function(self, M):
        """``f(B)``: ``f`` lambdified over the eigenvalues of ``B`` and its
        scalar parameters; near a removable singularity (``0/0``, e.g.
        ``(1 − (1 − ηx)^t)/x`` at ``x = 0``) the cancelled form is used."""
        x, body = M.function.variables[0], M.function.expr
        params = sorted(body.free_symbols - {x}, key=lambda s: s.name)
        fns = [sp.lambdify([x] + params, body, modules="numpy")]
        regular = removable_form(M.function)
        if regular is not None:
            fns += [sp.lambdify([x] + params, e, modules="numpy") for e in regular]
        children = [self.scalar(s) for s in params]
        node = N.MFunction(self.matrix(M.arg), fns, children, what=f"matrix function {M}")
        node.random = node.child.random or any(c.random for c in children)
        node.batched = node.child.batched or any(c.batched for c in children)
        return node

    def _wrap(self, node):
        node.random, node.batched = node.child.random, node.child.batched
        return node

    def _symbol(self, M):
        if isinstance(M, SampleMean):
            node = MSampleMean(M)
        elif isinstance(M, SampleCovariance):
            node = MSampleCovariance(M)
        elif isinstance(M, GaussianNoise):
            var = self.scalar(M.variance)
            return self._flags(MNoise(M, var, var.batched), M)
        elif getattr(M, "is_random", False):
            node = MRandom(M)
        else:
            return N.MConst(M.name, isinstance(M, Vector))
        node.random = True
        return node

    def _matadd(self, M, cores):
        terms = list(M.args)
        children = []
        if cores:
            key = frozenset(terms)
            if key in self.cores:
                return self._spectral(key)
            sub = sorted((k for k in self.cores if isinstance(k, frozenset) and k < key), key=len, reverse=True)
            for k in sub:
                if k <= set(terms):
                    children.append(self._spectral(k))
                    terms = [t for t in terms if t not in k]
        children += [self.matrix(t) for t in terms]
        return self._add(children)

    def _matmul(self, M, exclude=None):
        coeff, mats = M.as_coeff_matrices()
        mats = list(mats)
        children = []
        chain_cores = [(k, *k.as_coeff_matrices()) for k in self.cores
                       if isinstance(k, MatMul) and k != exclude]
        chain_cores.sort(key=lambda t: len(t[2]), reverse=True)
        i = 0
        while i < len(mats):
            for key, c0, cm in chain_cores:
                k = len(cm)
                if tuple(mats[i:i + k]) == tuple(cm):
                    children.append(self._spectral(key))
                    coeff = coeff / c0
                    i += k
                    break
            else:
                children.append(self.matrix(mats[i]))
                i += 1
        c = None if coeff == 1 else self.scalar(coeff)
        node = N.MMul(c, children)
        node.random = any(ch.random for ch in children) or (c is not None and c.random)
        node.batched = any(ch.batched for ch in children) or (c is not None and c.batched)
        return node

    # ------------------------------------------------------------ evaluation
    def evaluate(self, draws, plan, record=None, memo=None):
        """Observables on one draw: array ``(n_obs, N)``. ``memo``: values
        already known for this draw (the planning draw's reusable bases)."""
        ctx = N.Context(self, {}, plan, record)
        ctx.draws = draws
        if memo:
            ctx.memo.update(memo)
        size = self.bound.size
        out = np.empty((len(self.observables), size))
        for a, b in plan.blocks(size):
            ctx.block = (a, b)
            for i, node in enumerate(self.observables):
                out[i, a:b] = _real(node(ctx), node)
        return out

    def draw(self, plan, seed_seq, trial, record=None):
        ctx = N.Context(self, {}, plan, record)
        return self.sampler.draw(ctx, seed_seq, trial)

    def reset(self):
        """Forget values kept across draws (deterministic nodes, the laws'
        square roots): after planning, so that every process computes them
        the same way, under the plan."""
        self.persistent.clear()
        self.sampler.reset()

    def keep_planning_draw(self, plan, seed_seq, draws, memo):
        """Keep the planning draw (trial 0's arrays) and its reusable bases
        for trial 0 of a run under ``plan`` with ``seed_seq`` (``plan.py``)."""
        self._planned = (plan, _seed_key(seed_seq), draws, memo) if REUSE_PLANNING_DRAW else None

    def drop_planning_draw(self):
        self._planned = None

    def trial(self, plan, seed_seq, t):
        """``(draws, observables)`` of trial ``t``; trial 0 of the plan's own
        seed reuses the planning draw (bit for bit the same arrays and values)."""
        kept = getattr(self, "_planned", None)
        if t == 0 and kept is not None and kept[0] is plan and kept[1] == _seed_key(seed_seq):
            self._planned = None          # once: the arrays are the run's from here on
            return kept[2], self.evaluate(kept[2], plan, memo=kept[3])
        draws = self.draw(plan, seed_seq, t)
        return draws, self.evaluate(draws, plan)

    def run(self, plan, seed_seq, trials):
        """Observables for each trial in ``trials``: ``(len, n_obs, N)``."""
        return np.stack([self.trial(plan, seed_seq, t)[1] for t in trials])

    def make_plan(self, seed_seq):
        return make_plan(self, seed_seq)


@lru_cache(maxsize=1024)
def _lambdified(e):
    """``(fn, leaves, symbols)``: the scalar expression ``e`` as a NumPy
    function of its outermost matrix sub-expressions (``leaves``, each
    evaluated by its own node) and its scalar symbols. Kept per process (a
    pure function of ``e``; ``lambdify`` prints and compiles source, about a
    third of compiling a ridge risk), so that later runs of the same
    expression skip it."""
    leaves, repl = [], {}
    for sub in _outer(e):
        if sub not in repl:
            repl[sub] = sp.Dummy(f"f{len(repl)}")
            leaves.append(sub)
    body = e.xreplace(repl)
    syms = sorted(body.free_symbols - set(repl.values()), key=lambda s: s.name)
    fn = sp.lambdify(list(repl.values()) + syms, body, modules="numpy")
    return fn, tuple(leaves), tuple(syms)


@lru_cache(maxsize=4096)
def _transposed(M):
    """``Mᵀ`` as SymPy writes it (``M.T``: ``doit`` of the transpose, the
    costliest step of compiling a risk — tens of ms — so kept per process:
    a second run of the same expression compiles in a few ms), or ``None``."""
    try:
        return M.T
    except Exception:  # pragma: no cover - an expression SymPy cannot transpose
        return None


#: reuse the planning draw as trial 0 (``plan.py``); off only to test that the
#: reuse is bit-identical
REUSE_PLANNING_DRAW = True


def _seed_key(seed_seq):
    return (seed_seq.entropy, tuple(seed_seq.spawn_key), seed_seq.pool_size)


def _outer(e):
    """Outermost sub-expressions of ``e`` that need matrix evaluation."""
    if isinstance(e, (Tr, Form, sp.Trace, Norm)) or hasattr(e, "mc_node"):
        yield e
        return
    if isinstance(e, (Var, Cov)):
        raise NotImplementedError(
            f"monte_carlo: {type(e).__name__} is supported as a term of the expression (possibly "
            f"inside a function of variances and covariances), not nested in {e}")
    if isinstance(e, MatrixExpr):
        raise NotImplementedError(f"monte_carlo: cannot evaluate {e} inside a scalar expression; "
                                  "wrap matrices in Tr(...) or use a 1×1 form")
    for a in e.args:
        yield from _outer(a)


def _real(v, node):
    v = np.asarray(v)
    if np.iscomplexobj(v):
        if np.any(np.abs(v.imag) > 1e-12 * np.maximum(np.abs(v.real), 1.0)):
            raise ValueError(f"monte_carlo: {getattr(node, 'expr', 'the expression')} evaluated to "
                             "complex values")
        v = v.real
    return v
