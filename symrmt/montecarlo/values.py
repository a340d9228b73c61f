"""Lazy matrix values for one Monte Carlo draw.

A value is a sum of *terms* ``c · F₁F₂…F_k`` kept unmultiplied, where the
coefficient ``c`` is a scalar or a batch vector (one entry per grid point of
the array-valued bindings) and each factor is either

* ``Dense(a)`` — an explicit array, ``(r, c)`` or batched ``(N, r, c)``;
* ``Diag(f, basis)`` — ``V diag(f) Vᵀ`` with ``V`` the orthonormal
  eigenbasis ``basis`` (``None``: the common basis in which 1-D bindings are
  diagonal), ``f`` of shape ``(r,)`` or batched ``(N, r)``.

Why lazy: for ``Tr[Σ̂(Σ̂+λ)⁻¹]`` on a grid of ``N`` ridges the random core
``Σ̂`` is diagonalised once, the resolvent is ``Diag(1/(e+λ), V)`` with a
batched ``f``, ``Σ̂`` itself is ``Diag(e, V)``, their product merges to
``Diag(e/(e+λ), V)`` and the trace is ``Σ f`` — no ``d×d`` matrix is formed
per grid point, and ``V`` is never needed. Where the algebra cannot stay
diagonal (sums of matrices in different bases, inverses of non-symmetric or
batched matrices) it falls back to dense (batched) linear algebra, so every
expression is still evaluated exactly.

A ``Basis`` computes its eigenpairs on first use; whether eigenvectors are
needed is learnt once per run by a planning draw (see ``plan.Plan``), so
pure spectral expressions use ``eigvalsh`` only, and a core whose
eigenvectors only meet thin blocks (``uᵀ(Σ̂+λ)⁻¹w``, the ridge estimator
``ŵ(λ)`` on a grid) keeps them factored (``Basis._factor``: ``dsyevd``
without its back-transformation).
"""
from __future__ import annotations

import contextlib
import contextvars
import weakref

import numpy as np

from . import contract

#: Products of sums with more terms than this are collapsed to a dense term
#: first, so that distributing products over sums cannot blow up.
MAX_TERMS = 16


class Dense:
    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a

    @property
    def batched(self):
        return self.a.ndim == 3

    @property
    def T(self):
        return Dense(np.swapaxes(self.a, -1, -2))


class Diag:
    __slots__ = ("f", "basis")

    def __init__(self, f, basis=None):
        self.f = f
        self.basis = basis

    @property
    def batched(self):
        return self.f.ndim == 2

    @property
    def T(self):
        return self


# ---------------------------------------------------------------- eigensolvers
#: Arrays known to be lower triangular in their first ``c`` rows and zero
#: below (a Gram-sampled data block, ``sampler.bartlett``): ``id → array``.
_LOWER = weakref.WeakValueDictionary()


def mark_lower(a):
    """Record that ``a`` (``m×c``, ``m ≥ c``) is lower triangular in its first
    ``c`` rows and zero below, so that ``aᵀa = LᵀL`` is formed by ``lauum``."""
    _LOWER[id(a)] = a


#: ``lauum`` only from this size on: OpenBLAS runs it multithreaded at every
#: size, which costs more than the product itself for small matrices
LAUUM_MIN = 256


def _is_lower(a):
    return a.shape[1] >= LAUUM_MIN and _LOWER.get(id(a)) is a


#: the per-draw eigensolver: ``"numpy"`` (LAPACK ``syevd`` through SciPy, on
#: the matrix in place) or ``"cupy"`` (``cupy.linalg.eigh`` on the GPU); set
#: for the duration of a run by :func:`use_backend`.
BACKENDS = ("numpy", "cupy")
_BACKEND = contextvars.ContextVar("symrmt_mc_backend", default="numpy")


def check_backend(name):
    """Validate ``backend=``; ``"cupy"`` needs CuPy importable."""
    if name not in BACKENDS:
        raise ValueError(f"monte_carlo: backend must be one of {BACKENDS}, got {name!r}")
    if name == "cupy":
        try:
            import cupy  # noqa: F401
        except ImportError as exc:
            raise ImportError("monte_carlo: backend='cupy' needs CuPy (pip install cupy-cuda12x) and a GPU; "
                              f"importing it failed: {exc}") from None
    return name


@contextlib.contextmanager
def use_backend(name):
    token = _BACKEND.set(check_backend(name))
    try:
        yield
    finally:
        _BACKEND.reset(token)


def _eigh_lower(a, values_only=False):
    """Eigenpairs of the symmetric matrix whose lower triangle (C order) is
    ``a``; ``a`` is consumed (overwritten). NumPy backend: LAPACK ``syevd``
    (divide and conquer, as ``numpy.linalg.eigh``) through SciPy with
    ``overwrite_a``: no copy. CuPy backend: ``cupy.linalg.eigh`` (``cuSOLVER
    syevd``), results copied back to the host."""
    if _BACKEND.get() == "cupy":
        import cupy
        g = cupy.asarray(a)
        if values_only:
            return cupy.asnumpy(cupy.linalg.eigvalsh(g, UPLO="L")), None
        e, V = cupy.linalg.eigh(g, UPLO="L")
        return cupy.asnumpy(e), cupy.asnumpy(V)
    if values_only:
        return np.linalg.eigvalsh(a, UPLO="L"), None
    from scipy.linalg import eigh
    # the C-order lower triangle is the Fortran-order upper triangle of aᵀ (no copy)
    e, V = eigh(a.T, lower=False, overwrite_a=True, check_finite=False, driver="evd")
    return e, V


#: eigenvectors kept factored (:meth:`Basis._factor`) for cores that the plan
#: applies to thin blocks only (``plan.Plan.thin_vectors``), from this size on:
#: below it the LAPACK calls' fixed costs outweigh the saved back-transformation
#: (measured: even at d = 128, ahead from d = 256)
FACTOR_MIN = 128


def _lapack():
    from scipy.linalg import lapack
    return lapack


_SYTRD_LWORK = {}


def _sytrd_lwork(n):
    if n not in _SYTRD_LWORK:
        _SYTRD_LWORK[n] = max(1, int(_lapack().dsytrd_lwork(n, lower=0)[0]))
    return _SYTRD_LWORK[n]


#: ``dsyevd`` scales a matrix whose largest entry lies outside
#: ``[RMIN, RMAX]`` before reducing it; the factored path leaves such
#: (extreme) matrices to ``dsyevd`` itself
_SMLNUM = np.finfo(float).tiny / np.finfo(float).eps
_RMIN, _RMAX = np.sqrt(_SMLNUM), np.sqrt(1.0 / _SMLNUM)


class Basis:
    """Eigenbasis of one symmetric matrix, computed on first use.

    ``matrix``: the dense symmetric matrix; or ``gram=(Y, c)`` for ``c·YᵀY``
    (eigenvalues then come from the smaller of ``YᵀY`` and ``YYᵀ``, padded
    with exact zeros). ``want_vectors``: compute eigenvectors together with
    the eigenvalues (``eigh``) rather than eigenvalues only (``eigvalsh``).
    ``on_vectors``: called with ``key`` when eigenvectors are requested, and
    with ``(key, (rows, batched, size))`` when they are only applied to a thin
    block from the left (:meth:`apply_left`; the planning draw records both).
    ``thin``: the plan applies the eigenvectors to thin blocks only — the
    decomposition then keeps them factored (:meth:`_factor`) and forms
    ``V`` only if something asks for the whole matrix.
    """

    __slots__ = ("key", "size", "_matrix", "_gram", "_values", "_vectors", "want_vectors", "on_vectors",
                 "by_eigh", "thin", "_Z", "_refl", "_tau", "_applied")

    def __init__(self, key, size, matrix=None, gram=None, want_vectors=False, on_vectors=None, thin=False):
        self.key, self.size = key, size
        self._matrix, self._gram = matrix, gram
        self._values = self._vectors = None
        self.want_vectors, self.on_vectors = want_vectors, on_vectors
        self.thin = thin
        self._Z = self._refl = self._tau = None
        self._applied = 0      # rows applied through the factors so far (this draw)
        #: eigenvalues and eigenvectors from one ``eigh`` of the full matrix,
        #: exactly what a basis with ``want_vectors`` computes (the planning
        #: draw's bases that satisfy this are reused by trial 0: ``plan.py``)
        self.by_eigh = False

    def _full(self):
        """The matrix; only its lower triangle is guaranteed (the eigensolvers
        read that triangle only)."""
        if self._matrix is None:
            Y, c = self._gram
            if _is_lower(Y):
                # Y = [L; 0] with L lower triangular: YᵀY = LᵀL by LAPACK lauum
                # (on the Fortran view Lᵀ = U it forms UUᵀ = LᵀL in the upper
                # triangle of U, i.e. the lower triangle of the C-order result)
                from scipy.linalg.lapack import dlauum
                k = Y.shape[1]
                U = np.array(Y[:k].T, order="F")
                m, info = dlauum(U, lower=0, overwrite_c=1)
                if info != 0:  # pragma: no cover - lauum fails only on bad arguments
                    raise RuntimeError(f"LAPACK dlauum failed (info={info})")
                m = m.T  # C order, lower triangle = LᵀL
            else:
                m = Y.T @ Y  # matmul spots Yᵀ·Y and uses a symmetric rank-k update
            m *= c  # in place: the same products as c * (YᵀY), one pass fewer
            self._matrix = m
        return self._matrix

    def _eigh(self):
        a = self._full()
        if not (self.thin and self._factor(a)):
            self._values, self._vectors = _eigh_lower(a)
        self._matrix = None  # overwritten by the solver
        self.by_eigh = True

    def _factor(self, a):
        """Eigenpairs of the symmetric matrix whose lower triangle (C order)
        is ``a``, with the eigenvectors kept factored: ``V = diag(Q, 1)·Z``.

        ``dsyevd`` is exactly three steps: the tridiagonal reduction
        ``A = Q T Qᵀ`` (``dsytrd``; ``Q`` a product of ``n − 1`` Householder
        reflectors), ``T = Z diag(e) Zᵀ`` (``dstedc``, divide and conquer, as
        in ``dstevd``) and the back-transformation ``V = Q Z`` (``dormtr``,
        a third of the cost at ``d = 400``). The first two are called here as
        ``dsyevd`` calls them (same triangle: the eigenvalues are bit for bit
        those of ``dsyevd``); the third is skipped: the products
        ``L V = (L Q) Z`` and ``L Vᵀ = (L Zᵀ) Qᵀ`` with a thin ``L`` (``r ≤
        d/2`` rows) apply the reflectors to ``L`` (``dormqr``, ``O(r d²)``)
        instead of forming ``V`` (``O(d³)``): the same products, associated
        differently (rounding only). ``dsytrd`` on the upper triangle (``aᵀ`` in Fortran
        order) writes ``Q = H(n−1)⋯H(1)`` in QL form acting on the first
        ``n − 1`` coordinates; with ``P`` the reversal of those coordinates,
        ``P Q P = H'(1)⋯H'(n−1)`` is in QR form (reflectors
        ``P v``: the stored block reversed in rows and columns, ``τ``
        reversed), so ``Q C = P·dormqr(P C)`` (SciPy's LAPACK wrappers
        have no ``dormtr``/``dormql``; calling ``dormtr`` in place through
        ``scipy.linalg.cython_lapack`` measured no faster). Returns ``False`` (nothing
        done) for what ``dsyevd`` treats specially: a non-real or small
        matrix, one that it would scale first (largest entry outside
        ``[√(safmin/ε), 1/√(safmin/ε)]``, or not finite), or another backend."""
        n = a.shape[0]
        if n < FACTOR_MIN or a.dtype != np.float64 or _BACKEND.get() != "numpy":
            return False
        big = np.max(np.abs(np.diagonal(a))) if self._gram is not None else np.max(np.abs(a))  # PSD: the diagonal
        if not (_RMIN <= big <= _RMAX):
            return False
        lapack = _lapack()
        c, d, e, tau, info = lapack.dsytrd(a.T, lower=0, lwork=_sytrd_lwork(n), overwrite_a=1)
        if info != 0:  # pragma: no cover - only on bad arguments
            raise np.linalg.LinAlgError(f"LAPACK dsytrd failed (info={info})")
        w, Z, info = lapack.dstevd(d, e, compute_v=1, overwrite_d=1, overwrite_e=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"LAPACK dstevd: the algorithm failed to converge (info={info})")
        self._values, self._Z = w, Z
        self._refl = np.asfortranarray(c[:n - 1, 1:][::-1, ::-1])
        self._tau = np.ascontiguousarray(tau[::-1])
        self._applied = 0
        return True

    def _q(self, C, trans):
        """``diag(Q, 1)·C`` (``trans="N"``) or ``diag(Qᵀ, 1)·C`` (``"T"``)
        for ``C`` ``n×r`` (overwritten)."""
        k = self.size - 1
        C[:k] = self._apply_q(C[:k], trans)
        return C

    def _apply_q(self, C, trans):
        """``Q C`` (``trans="N"``) or ``Qᵀ C`` (``"T"``) for real ``C`` with
        ``n − 1`` rows (see :meth:`_factor`: ``Q = P Q' P``)."""
        r = C.shape[1]
        # a few columns: the unblocked dorm2r (the minimal workspace); more: blocked
        # (measured at d = 400: 0.05 vs 0.2 ms for one column, 1.0 vs 2.5 ms for 100)
        lwork = max(r, 1) if r <= 8 else 32 * r + 4160
        out, _, info = _lapack().dormqr("L", trans, self._refl, self._tau, np.asfortranarray(C[::-1]),
                                        lwork=lwork, overwrite_c=1)
        if info != 0:  # pragma: no cover - only on bad arguments
            raise RuntimeError(f"LAPACK dormqr failed (info={info})")
        return out[::-1]

    def _form(self):
        """``V = diag(Q, 1)·Z`` from the factors (``O(d³)``, what ``dsyevd``
        would have done)."""
        return self._q(np.array(self._Z, order="F"), "N")

    def stand_in(self):
        """Eigenvalues 1 and eigenvectors ``I`` instead of the decomposition
        (``plan._classify``: which products ask for eigenvectors, before
        anything is decomposed)."""
        self._values, self._vectors = np.ones(self.size), np.eye(self.size)
        self.thin, self._applied = False, -1    # -1: apply_left returns L itself (L·I)

    def factored(self):
        """Whether the eigenvectors are (for now) only available factored;
        decomposes on first call for a ``thin`` basis (keeping eigenvalues
        already handed out)."""
        if not self.thin or self._vectors is not None:
            return False
        if self._Z is None:
            if self._values is None:
                self.values  # noqa: B018 - decomposes
            else:
                values = self._values
                self._eigh()
                self._values, self.by_eigh = values, False
        return self._Z is not None and self._vectors is None

    def apply_left(self, L, transposed=False):
        """``L V`` (``L Vᵀ`` if ``transposed``) for ``L`` of shape ``(r, d)``
        or batched ``(N, r, d)``: through the factors (:meth:`_factor`) while
        ``V`` is not formed and the rows applied this draw stay below ``d/2``
        (beyond that forming ``V`` once is cheaper), else by a matrix product
        with ``V``. The same product, associated differently (rounding only).
        In a planning draw the use is recorded as ``(rows, batched, d)``."""
        if self.on_vectors is not None:
            self.on_vectors(self.key, (L.shape[-2], L.ndim == 3, self.size))
        if self._applied < 0:                      # a stand-in (stand_in): V = I
            return L
        rows = int(np.prod(L.shape[:-1]))
        flat = L.reshape(rows, L.shape[-1])        # the grid's rows stacked: one BLAS-3 product
        if self.factored() and self._applied + rows <= self.size // 2:
            self._applied += rows
            if np.iscomplexobj(flat):
                out = self._left(flat.real, transposed) + 1j * self._left(flat.imag, transposed)
            else:
                out = self._left(flat, transposed)
        else:
            V = self._vectors_now()
            out = flat @ (V.T if transposed else V)
        return out.reshape(L.shape)

    def _left(self, L, transposed):
        if not transposed:                   # L V = (diag(Qᵀ, 1) Lᵀ)ᵀ Z
            B = self._q(np.array(L.T, order="F"), "T")
            return B.T @ self._Z
        G = L @ self._Z.T                    # L Vᵀ = L Zᵀ diag(Qᵀ, 1) = (diag(Q, 1) (L Zᵀ)ᵀ)ᵀ
        self._q(G.T, "N")                    # Gᵀ: a view, overwritten
        return G

    @property
    def values(self):
        """Eigenvalues. In a planning draw (``on_vectors`` set) where the full
        matrix would be decomposed anyway, ``eigh`` at once: should the
        expression then ask for eigenvectors, the planning draw does not pay
        for an ``eigvalsh`` first (its values are discarded after planning)."""
        if self._values is None:
            small = self._gram is not None and self._gram[0].shape[0] < self._gram[0].shape[1]
            if self.want_vectors or (self.on_vectors is not None and not small):
                self._eigh()
            elif self._gram is not None and self._matrix is None:
                Y, c = self._gram
                if Y.shape[0] < Y.shape[1]:
                    small = c * (Y @ Y.T)
                    e = _eigh_lower(small, values_only=True)[0]
                else:  # the full matrix itself: kept, should eigenvectors be asked for later
                    e = _eigh_lower(self._full(), values_only=True)[0]
                self._values = np.concatenate([np.zeros(self.size - e.size), e])
            else:
                self._values = _eigh_lower(self._full(), values_only=True)[0]
        return self._values

    @property
    def vectors(self):
        if self.on_vectors is not None:  # recorded at every request (planning draw)
            self.on_vectors(self.key)
        return self._vectors_now()

    def _vectors_now(self):
        if self._vectors is None:
            if self._Z is None:
                values = self._values
                self._eigh()
                if values is not None:  # keep the eigenvalues already handed out
                    self._values = values
                    self.by_eigh = False
            if self._vectors is None:        # decomposed factored: form V once
                self._vectors = self._form()
        return self._vectors


class Mat:
    """A lazy matrix value: ``shape`` and a tuple of ``(coeff, factors)``."""

    __slots__ = ("shape", "terms")

    def __init__(self, shape, terms):
        self.shape = tuple(shape)
        self.terms = tuple(terms)

    def __repr__(self):  # for debugging only
        kinds = [" ".join(type(f).__name__ for f in fs) or "I" for _, fs in self.terms]
        return f"Mat{self.shape}[{' + '.join(kinds) or '0'}]"


# ---------------------------------------------------------------- builders
def _coeff(c):
    return np.asarray(c, dtype=float) if not np.iscomplexobj(c) else np.asarray(c)


def identity(k, c=1.0):
    return Mat((k, k), [(_coeff(c), ())])


def zero(r, c):
    return Mat((r, c), [])


def dense(a, c=1.0):
    return Mat(a.shape[-2:], [(_coeff(c), (Dense(a),))])


def diag(f, basis=None):
    return Mat((f.shape[-1],) * 2, [(_coeff(1.0), (Diag(f, basis),))])


def batched(m):
    """Whether ``m`` depends on the batch (grid) axis."""
    return any(c.ndim or any(f.batched for f in fs) for c, fs in m.terms)


def _bc(c, f):
    """Broadcast a coefficient (``()`` or ``(N,)``) against ``f`` (``(..., r)``)."""
    return c[:, None] if c.ndim and f.ndim >= 1 else c


# ---------------------------------------------------------------- algebra
def _key(fs):
    return tuple(id(f) for f in fs)


def _combine(terms):
    """Merge terms with the same factors; fold ``c·I`` and single-``Diag``
    terms of one basis into one ``Diag`` (the spectral shift ``e + λ``)."""
    groups = {}
    for c, fs in terms:
        if not c.ndim and c == 0:
            continue
        k = _key(fs)
        groups[k] = (groups[k][0] + c, fs) if k in groups else (c, fs)
    eye = groups.pop((), None)
    by_basis = {}
    for k, (c, fs) in list(groups.items()):
        if len(fs) == 1 and isinstance(fs[0], Diag):
            by_basis.setdefault(id(fs[0].basis), []).append(groups.pop(k))
    merged = []
    for items in by_basis.values():
        basis = items[0][1][0].basis
        f = sum(_bc(c, fs[0].f) * fs[0].f for c, fs in items)
        if eye is not None and len(by_basis) == 1:
            f = f + _bc(eye[0], f)
            eye = None
        merged.append((_coeff(1.0), (Diag(f, basis),)))
    out = ([eye] if eye is not None else []) + list(groups.values()) + merged
    return out


def add(*mats):
    shape = mats[0].shape
    for m in mats[1:]:
        if m.shape != shape:
            raise ValueError(f"cannot add matrices of shapes {shape} and {m.shape}")
    return Mat(shape, _combine([t for m in mats for t in m.terms]))


def scale(m, c):
    c = _coeff(c)
    return Mat(m.shape, _combine([(c * tc, fs) for tc, fs in m.terms]))


def _join(fa, fb):
    if fa and fb and isinstance(fa[-1], Diag) and isinstance(fb[0], Diag) and fa[-1].basis is fb[0].basis:
        return fa[:-1] + (Diag(fa[-1].f * fb[0].f, fa[-1].basis),) + fb[1:]
    return fa + fb


def _collapse(m):
    return dense(materialize(m)) if len(m.terms) > 1 else m


def collapse_thin(m):
    """A sum of several thin terms (vectors: ``r×k`` or ``k×r`` with
    ``k ≤ contract._THIN < r``, e.g. ``ŵ − w̄ = G·Xᵀy/n − w̄``) summed once into
    an explicit (batched) array. Each chain is swept from its thin end (BLAS-3
    over the whole grid, ``contract._sweep``), and a form built on the sum
    (``rᵀΣr``) is then one contraction instead of one per pair of terms. The
    value is the same sum, only associated differently (rounding only)."""
    if len(m.terms) > 1 and min(m.shape) <= contract._THIN < max(m.shape):
        return dense(materialize(m))
    return m


def matmul(a, b):
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply matrices of shapes {a.shape} and {b.shape}")
    a, b = collapse_thin(a), collapse_thin(b)
    if len(a.terms) * len(b.terms) > MAX_TERMS:
        a, b = (_collapse(a), b) if len(a.terms) >= len(b.terms) else (a, _collapse(b))
        if len(a.terms) * len(b.terms) > MAX_TERMS:
            a, b = _collapse(a), _collapse(b)
    terms = [(ca * cb, _join(fa, fb)) for ca, fa in a.terms for cb, fb in b.terms]
    return Mat((a.shape[0], b.shape[1]), _combine(terms))


def transpose(m):
    return Mat(m.shape[::-1], [(c, tuple(f.T for f in reversed(fs))) for c, fs in m.terms])


def as_diag(m):
    """``(f, basis)`` if ``m`` is one diagonal term (``c·I`` or ``c·Diag``),
    with the coefficient folded into ``f``; else ``None``."""
    if len(m.terms) != 1:
        return (np.zeros(m.shape[0]), None) if not m.terms and m.shape[0] == m.shape[1] else None
    c, fs = m.terms[0]
    if not fs:
        return c, "identity"
    if len(fs) == 1 and isinstance(fs[0], Diag):
        return _bc(c, fs[0].f) * fs[0].f, fs[0].basis
    return None


def inverse(m):
    """``m⁻¹``: elementwise on a diagonal term, dense otherwise (a singular
    dense draw gives NaN, counted and reported by the runner)."""
    d = as_diag(m)
    if d is not None:
        f, basis = d
        with np.errstate(divide="ignore", invalid="ignore"):
            if isinstance(basis, str):
                return identity(m.shape[0], 1.0 / f)
            return diag(1.0 / f, basis)
    a = materialize(m)
    try:
        return dense(np.linalg.inv(a))
    except np.linalg.LinAlgError:  # batched inv raises if any member is singular
        return dense(_inv_each(a))


def _inv_each(a):
    out = np.full(a.shape, np.nan)
    for idx in np.ndindex(a.shape[:-2]):
        try:
            out[idx] = np.linalg.inv(a[idx])
        except np.linalg.LinAlgError:
            pass
    return out


def int_power(m, k):
    """``m^k`` for an integer ``k`` (negative: power of the inverse)."""
    if k < 0:
        return int_power(inverse(m), -k)
    out = identity(m.shape[0])
    base = m
    while k:  # square-and-multiply keeps the chains short
        if k & 1:
            out = matmul(out, base)
        k >>= 1
        if k:
            base = matmul(base, base)
    return out


def psd_power(f, s, what):
    """``f**s`` for eigenvalues ``f`` of a symmetric PSD matrix; rounding
    negatives (relative size below ~1e3·eps·r) are set to zero."""
    f = np.asarray(f)
    if np.iscomplexobj(f):
        raise ValueError(f"{what}: fractional power of a complex matrix")
    scale_ = np.max(np.abs(f), axis=-1, keepdims=True) if f.ndim else np.abs(f)
    tol = 1e3 * np.finfo(float).eps * max(f.shape[-1] if f.ndim else 1, 1) * scale_
    if np.any(f < -tol):
        raise ValueError(f"{what}: a real fractional power needs a symmetric positive semi-definite "
                         f"base, but it has an eigenvalue {float(np.min(f)):.3g}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f < 0, 0.0, f) ** _bc(np.asarray(s, dtype=float), f)


def is_symmetric(a):
    scale_ = np.max(np.abs(a)) if a.size else 0.0
    return a.shape[-1] == a.shape[-2] and np.allclose(a, np.swapaxes(a, -1, -2), rtol=0, atol=1e-12 * scale_)


def frac_power(m, s, what):
    """``m^s`` for real non-integer ``s``: ``m`` must be symmetric PSD."""
    d = as_diag(m)
    if d is not None:
        f, basis = d
        if isinstance(basis, str):
            return identity(m.shape[0], psd_power(f, s, what))
        return diag(psd_power(f, s, what), basis)
    a = materialize(m)
    if not is_symmetric(a):
        raise ValueError(f"{what}: a real fractional power needs a symmetric positive semi-definite "
                         f"base, but the base is not symmetric")
    a = (a + np.swapaxes(a, -1, -2)) / 2
    if a.ndim == 2:
        e, V = np.linalg.eigh(a)
        b = Basis(None, a.shape[0])
        b._values, b._vectors = e, V
        return diag(psd_power(e, s, what), b)
    e, V = np.linalg.eigh(a)  # batched base: dense fallback
    return dense(np.einsum("nij,nj,nkj->nik", V, psd_power(e, s, what), V))


def eigen_apply(fns, e, params):
    """``f(e)`` for eigenvalues ``e`` (``(r,)`` or batched ``(N, r)``) and
    parameters (``()`` or ``(N,)``). With ``fns = (f, f_cancelled, q)`` the
    cancelled form is used where ``|q(e)|`` is small (below ``1e-3`` of its
    largest value: near the removable singularity, where ``f`` is ``0/0`` or
    loses digits) or ``f`` is not finite; elsewhere ``f`` as written, which
    stays accurate where an expanded cancelled form (``(1 − ηx)^t``) would not."""
    args = [e] + [np.asarray(p)[..., None] if np.ndim(p) else p for p in params]
    shape = np.broadcast_shapes(*[np.shape(a) for a in args])
    with np.errstate(all="ignore"):
        v = np.broadcast_to(fns[0](*args), shape)
        if len(fns) == 1:
            return v
        q = np.abs(np.broadcast_to(fns[2](*args), shape))
        near = (q <= 1e-3 * np.max(q, axis=-1, keepdims=True)) | ~np.isfinite(v)
        if near.any():
            v = np.where(near, np.broadcast_to(fns[1](*args), shape), v)
    return v


def function(m, fn, what):
    """``f(m)`` for symmetric ``m`` through its eigenbasis; ``fn`` maps
    eigenvalues (last axis) to values."""
    d = as_diag(m)
    if d is not None:
        f, basis = d
        if isinstance(basis, str):
            return identity(m.shape[0], fn(np.asarray(f)[..., None])[..., 0])
        return diag(fn(f), basis)
    a = materialize(m)
    if not is_symmetric(a):
        raise ValueError(f"{what}: the argument of a matrix function must be symmetric")
    a = (a + np.swapaxes(a, -1, -2)) / 2
    e, V = np.linalg.eigh(a)
    if a.ndim == 2:
        b = Basis(None, a.shape[0])
        b._values, b._vectors = e, V
        return diag(fn(e), b)
    return dense(np.einsum("nij,nj,nkj->nik", V, fn(e), V))  # batched argument: dense fallback


def largest_eigenvalue(m):
    """``‖m‖`` for symmetric PSD ``m`` (per grid point when batched)."""
    d = as_diag(m)
    if d is not None:
        f, basis = d
        return f if isinstance(basis, str) else np.max(f, axis=-1)
    return np.linalg.eigvalsh(materialize(m))[..., -1]


# ---------------------------------------------------------------- reductions
def trace(m):
    """``Tr m`` as a scalar or batch vector (``Form`` is the 1×1 case)."""
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"trace of a non-square matrix of shape {m.shape}")
    total = np.zeros(())
    for c, fs in m.terms:
        total = total + c * (contract.trace(fs) if fs else m.shape[0])
    return total


def materialize(m):
    """The explicit array, ``(r, c)`` or batched ``(N, r, c)``."""
    out = np.zeros(m.shape)
    for c, fs in m.terms:
        p = contract.product(fs) if fs else np.eye(m.shape[0])
        c = c[:, None, None] if c.ndim else c
        out = out + c * p
    return out
