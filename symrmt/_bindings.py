"""One binding layer for every evaluator: ``compile``, the generated module,
``monte_carlo`` and ``verify`` (docs/api.md, Evaluating).

Rules (the same everywhere):

* bindings are keyed by symbol names; a name is a scalar, a dimension or a
  deterministic matrix, never two of them (a scalar and a matrix both named
  ``Sigma`` is an error);
* scalars and dimensions are numbers or arrays that broadcast together (the
  grid); entries may be ints, floats, ``fractions.Fraction``,
  ``decimal.Decimal``, ``mpmath.mpf``, SymPy numbers or decimal strings
  (``"0.1"``) — the mpmath backend keeps them at full precision;
* a dimension is a positive integer; a scalar declared positive
  (``sr.scalar``) must be ≥ 0 when real (0 is the limit ``0⁺``); complex
  values are accepted only where the evaluator supports them;
* a deterministic matrix bound to a 1-D array is diagonal in one common
  basis, a 2-D array is the full matrix in that basis; a vector is 1-D
  coordinates; a covariance must be symmetric PSD; a matrix in the base of
  a fractional power or matrix function must be symmetric (PSD when it is
  the whole base of a fractional power: ``sr.power(A, 1/2)``), and a matrix
  that the expression inverts must be non-singular (condition number
  < 1e13) — Monte Carlo would otherwise read one triangle of a
  non-symmetric matrix, or return ~1e14 for a singular one;
* options of an evaluator (``eta``, ``xtol``, ``quad_rtol``, …) live in
  their own namespace: ``f(bindings_dict, **options)`` or
  ``f(..., options={...})``; a binding name is never reserved.

The part between the RUNTIME markers imports NumPy only; it is copied
verbatim into every module written by :func:`symrmt.faces.codegen.to_python`.
Every failure raises :class:`BindingError` (a ``ValueError`` and a
``TypeError``), naming the binding.
"""
from __future__ import annotations

import warnings

# ---- RUNTIME BEGINS ----
import numpy as np


class BindingError(ValueError, TypeError):
    """A binding is missing, unknown, or has an invalid value; the message
    names the binding and says what is wrong with it."""


#: condition number above which a matrix that the expression inverts is singular
COND_MAX = 1e13


def _fail(name, what):
    raise BindingError(f"binding {name!r}: {what}")


def _to_number(name, v, what="values"):
    """One entry of an object/string array as float or complex."""
    if isinstance(v, (bool, np.bool_)):
        _fail(name, "values must be numbers, got booleans")
    if isinstance(v, (str, bytes)):
        try:
            return float(v)
        except ValueError:
            try:
                return complex(v)
            except ValueError:
                _fail(name, f"{what} must be numbers; could not read {str(v)!r} as a number")
    if isinstance(v, complex) or (not isinstance(v, (int, float)) and getattr(v, "imag", 0)):
        try:
            return complex(v)
        except (TypeError, ValueError):
            _fail(name, f"{what} must be numbers, got {type(v).__name__}")
    try:
        return float(v)
    except (TypeError, ValueError):
        try:
            return complex(v)
        except (TypeError, ValueError):
            _fail(name, f"{what} must be numbers, got {type(v).__name__}")


def numbers(name, value, what="values"):
    """``value`` as a float64 or complex128 array (checked finite, non-empty).

    Exact entries (``Fraction``, ``Decimal``, ``mpf``, strings) are rounded
    here for validation only; the mpmath backend reads the original."""
    try:
        a = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - NumPy's own message is clear
        _fail(name, f"cannot be read as an array ({exc})")
    if a.dtype.kind == "b":
        _fail(name, f"{what} must be numbers, got booleans")
    if a.dtype.kind in "OUS":
        flat = [_to_number(name, v, what) for v in a.ravel()]
        kind = complex if any(isinstance(v, complex) for v in flat) else float
        a = np.array(flat, dtype=kind).reshape(a.shape)
    if a.dtype.kind not in "iufc":
        _fail(name, f"{what} must be numbers, got dtype {a.dtype}")
    if a.size == 0:
        _fail(name, "is empty")
    a = a.astype(complex if a.dtype.kind == "c" else float)
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.argwhere(bad)[0]
        where = f" at index {tuple(int(j) for j in i)}" if a.ndim else ""
        _fail(name, f"contains {a[tuple(i)].item()}{where}; values must be finite")
    return a


def validate_scalar(name, value, kind, allow_complex=True):
    """A scalar or dimension binding; ``kind``: ``"dim"`` (positive
    integer), ``"positive"`` (≥ 0 when real), ``"real"``, ``"complex"`` or
    ``"any"``. Returns the float/complex array."""
    a = numbers(name, value)
    if np.iscomplexobj(a):
        if not np.any(a.imag) and (kind in ("dim", "real") or not allow_complex):
            a = a.real.copy()
        elif kind in ("dim", "real"):
            _fail(name, f"{'a dimension' if kind == 'dim' else name} must be real, got a complex value")
        elif not allow_complex:
            _fail(name, "complex values are not supported here (Monte Carlo draws real matrices)")
    if kind == "dim":
        bad = (a <= 0) | (a != np.round(a))
        if bad.any():
            v = a[bad].ravel()[0].item()
            _fail(name, f"a dimension must be a positive integer, got {int(v) if float(v).is_integer() else v}")
    elif kind == "positive" and not np.iscomplexobj(a) and (a < 0).any():
        v = a[a < 0].ravel()[0].item()
        v = int(v) if float(v).is_integer() else v
        _fail(name, f"{name} is declared positive, got {v}; a real value must be ≥ 0 "
                    "(0 is the limit 0⁺; a spectral parameter off the positive axis is bound as a complex number)")
    return a


def validate_matrix(name, role, shape, value):
    """A matrix or vector binding; ``role``: ``"vector"``, ``"covariance"``,
    ``"symmetric"``, ``"psd"`` (symmetric positive semi-definite) or
    ``"deterministic"``; ``shape``: its two dimensions
    (ints or names). Returns ``(kind, array, (rows, cols))``: ``"diag"`` with
    the 1-D diagonal, or ``"full"`` with the 2-D matrix (a vector: 1-D)."""
    a = numbers(name, value, "entries")
    if np.iscomplexobj(a):
        if np.any(a.imag):
            _fail(name, "complex matrices are not supported; bind a real array")
        a = a.real.copy()
    rows, cols = shape
    if role == "vector":
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            _fail(name, f"a vector ({rows}×1) is bound to 1-D coordinates, got shape {a.shape}")
        return "full", a, (a.shape[0], 1)
    square = rows == cols
    if a.ndim == 1:
        if not square:
            _fail(name, f"a 1-D array means a diagonal matrix, but {name} is {rows}×{cols} (not square); "
                        "bind the full 2-D matrix")
        if role in ("covariance", "psd") and (a < 0).any():
            i = int(np.nonzero(a < 0)[0][0])
            what = "covariance eigenvalues" if role == "covariance" else \
                f"{name} is raised to a fractional power, so its eigenvalues"
            _fail(name, f"{what} must be ≥ 0, got {a[i].item()} at index {i}")
        return "diag", a, (a.shape[0], a.shape[0])
    if a.ndim != 2:
        _fail(name, f"expected a 1-D (diagonal) or 2-D array, got {a.ndim}-D of shape {a.shape}")
    if square and a.shape[0] != a.shape[1]:
        _fail(name, f"{name} is square ({rows}×{cols}) but the array has shape {a.shape}")
    if role in ("covariance", "symmetric", "psd"):
        scale = max(float(np.abs(a).max()), np.finfo(float).tiny)
        asym = float(np.abs(a - a.T).max())
        if asym > 1e-10 * scale:
            what = "a covariance" if role == "covariance" else \
                f"{name} enters a fractional power or matrix function, so it"
            _fail(name, f"{what} must be symmetric; max |A − Aᵀ| = {asym:.3g} (scale {scale:.3g})")
        a = (a + a.T) / 2
    if role in ("covariance", "psd"):
        w = np.linalg.eigvalsh(a)
        if w[0] < -1e-10 * max(w[-1], 0.0) - np.finfo(float).tiny:
            what = "a covariance" if role == "covariance" else f"{name} is raised to a fractional power, so it"
            _fail(name, f"{what} must be positive semi-definite; smallest eigenvalue {w[0]:.3g}")
    if square and not np.count_nonzero(a - np.diag(np.diag(a))):
        return "diag", np.diag(a).copy(), a.shape
    return "full", a, a.shape


def check_invertible(name, kind, a):
    """A matrix that the expression inverts must be non-singular."""
    if kind == "diag":
        s = np.abs(a)
        cond = np.inf if s.min() == 0 else s.max() / s.min()
    else:
        cond = np.linalg.cond(a)
    if not cond < COND_MAX:
        _fail(name, f"the expression inverts {name}, but the bound matrix is singular "
                    f"(condition number {cond:.3g} ≥ {COND_MAX:.0e})")


def check_grid(values):
    """The broadcast shape of the scalar bindings ``{name: array}``."""
    try:
        return tuple(np.broadcast_shapes(*[np.shape(a) for a in values.values()]))
    except ValueError:
        shapes = {k: np.shape(values[k]) for k in sorted(values) if np.ndim(values[k])}
        raise BindingError(f"array-valued bindings do not broadcast together: {shapes}") from None


def split_options(args, kwargs, names, option_names, caller, deprecated=None):
    """Bindings and options of a call ``f(bindings_dict, **kwargs)``.

    With a positional dict of bindings every keyword is an option
    (``f({"eta": 0.5, "lam": 0.1}, eta=1e-9)`` binds the symbol ``eta`` and
    sets the option). Without one, a keyword is a binding when it names a
    symbol; ``bindings={...}`` (unless a symbol is named ``bindings``) adds
    bindings whatever their names; ``options={...}`` (unless a symbol is named ``options``) holds
    options; any other keyword in ``option_names`` is an option by the
    deprecated keyword form (``deprecated(caller, name)`` is called: a
    ``DeprecationWarning`` in the package)."""
    if len(args) > 1:
        raise TypeError(f"{caller}: at most one positional argument (a dict of bindings), got {len(args)}")
    options = {}
    if args:
        if not isinstance(args[0], dict):
            raise TypeError(f"{caller}: the positional argument must be a dict of bindings, got "
                            f"{type(args[0]).__name__}")
        bindings = dict(args[0])
        for k, v in kwargs.items():
            if k == "options" and isinstance(v, dict):
                options.update(v)
            else:
                options[k] = v
    else:
        bindings = {}
        names = set(names)
        given = kwargs.get("bindings") if "bindings" not in names else None
        if given is not None:
            if not isinstance(given, dict):
                raise TypeError(f"{caller}: bindings must be a dict of name → value, got {type(given).__name__}")
            twice = sorted(set(given) & set(kwargs))
            if twice:
                raise TypeError(f"{caller}: {twice} given both in bindings={{...}} and as keywords")
            bindings.update(given)
        for k, v in kwargs.items():
            if k == "bindings" and given is not None:
                continue
            if k in names:
                bindings[k] = v
            elif k == "options":
                if not isinstance(v, dict):
                    raise TypeError(f"{caller}: options must be a dict, got {type(v).__name__}")
                options.update(v)
            elif k in option_names:
                if deprecated is not None:
                    deprecated(caller, k)
                options[k] = v
            else:
                bindings[k] = v               # reported as unknown by the binding layer
    unknown = sorted(set(options) - set(option_names))
    if unknown:
        raise TypeError(f"{caller}: unknown option(s) {unknown}; options are {sorted(option_names)}")
    return bindings, options# ---- RUNTIME ENDS ----

def _deprecated(caller, k):
    warnings.warn(f"{caller}: passing the option {k!r} as a keyword next to the bindings is deprecated; "
                  f"use options={{{k!r}: ...}} (a symbol named {k!r} is then bindable)",
                  DeprecationWarning, stacklevel=4)



# --------------------------------------------------------------------------- symbolic half
def structural_roles(expr):
    """``({name: "symmetric"|"psd"}, {names inverted})``: deterministic
    matrices that ``expr`` needs symmetric (a term, up to a scalar factor, of
    the base of a fractional power or matrix function), symmetric PSD (the
    whole base of a fractional power, up to a scalar factor) or invertible
    (the base of an inverse or a negative power)."""
    import sympy as sp
    from sympy.matrices.expressions import Inverse, MatAdd, MatMul, MatPow
    from sympy import MatrixSymbol

    symmetric, inverted, psd = set(), set(), set()

    def linear_symbols(base):
        terms = base.args if isinstance(base, MatAdd) else (base,)
        out = set()
        for t in terms:
            if isinstance(t, MatMul):
                mats = [a for a in t.args if getattr(a, "is_Matrix", False)]
                if len(mats) == 1:
                    t = mats[0]
            if isinstance(t, MatrixSymbol) and not getattr(t, "is_random", False) and t.shape[1] != 1:
                out.add(t.name)
        return out

    for node in sp.preorder_traversal(expr):
        base = None
        if isinstance(node, Inverse):
            inverted |= _whole_symbol(node.arg)
        elif isinstance(node, MatPow):
            base, e = node.args
            if e.is_integer and e.is_negative:
                inverted |= _whole_symbol(base)
            if not e.is_integer:
                symmetric |= linear_symbols(base)
                psd |= _whole_symbol(base)
                if e.is_negative:
                    inverted |= _whole_symbol(base)
        elif type(node).__name__ == "MatrixFunction":
            symmetric |= linear_symbols(node.args[1])
    return {k: ("psd" if k in psd else "symmetric") for k in symmetric | psd}, inverted


def _whole_symbol(base):
    """``{name}`` when ``base`` is a deterministic matrix symbol up to a scalar factor."""
    from sympy import MatrixSymbol
    from sympy.matrices.expressions import MatMul
    if isinstance(base, MatMul):
        mats = [a for a in base.args if getattr(a, "is_Matrix", False)]
        if len(mats) == 1:
            base = mats[0]
    if isinstance(base, MatrixSymbol) and not getattr(base, "is_random", False):
        return {base.name}
    return set()


def scalar_kind(sym):
    """Kind of a scalar symbol for :func:`validate_scalar`."""
    if sym.is_integer:
        return "dim"
    if sym.is_positive or sym.is_nonnegative:
        return "positive"
    if sym.is_real:
        return "real"
    return "complex" if sym.is_complex else "any"


def matrix_role(M, symmetric=()):
    """Role of a deterministic matrix symbol for :func:`validate_matrix`."""
    from .objects.matrices import Covariance, Vector
    if isinstance(M, Vector):
        return "vector"
    if isinstance(M, Covariance):
        return "covariance"
    if isinstance(symmetric, dict):
        return symmetric.get(M.name, "deterministic")
    return "symmetric" if M.name in symmetric else "deterministic"


def check_unique_names(scalars, matrices):
    """A name is a scalar/dimension or a matrix, never both."""
    both = sorted(set(scalars) & set(matrices))
    if both:
        k = both[0]
        raise BindingError(f"binding {k!r}: the name {k!r} is used for both a scalar and a matrix "
                           "in the expression; bindings are by name, so rename one of them")
