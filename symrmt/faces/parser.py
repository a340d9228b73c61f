"""Safe parsing of expressions and bindings typed on the command line.

Text is parsed with :mod:`ast` and the tree is walked by hand: only numbers,
names from a namespace, arithmetic (``+ - * / ** @``, unary ``-``), ``.T``,
``.inverse()`` and calls of whitelisted functions are evaluated. Nothing is
ever passed to ``eval``; anything else is a :class:`ParseError` with a
one-line message.

* :func:`parse_expression` — a random-matrix expression over a namespace
  (:func:`default_namespace` gives the common objects without declarations);
* :func:`declare` — ``NAME=Ctor(args)`` or ``NAME=expression`` (``--let``);
* :func:`parse_binding` — ``name=value`` of the bindings mini-language
  (numbers, ``logspace``, ``powerlaw`` …) into NumPy values.
"""
from __future__ import annotations

import ast
import difflib
import math

import numpy as np
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

MAX_CHARS = 5000
MAX_NODES = 2000
MAX_EXPONENT = 100          # numeric ** numeric: SymPy would compute huge integers exactly
MAX_ARRAY = 10_000_000      # entries of one bound array


class ParseError(ValueError):
    """Input text outside the accepted language (message is one line).

    Where the error is at a token, ``source`` is the text parsed, ``col`` the
    0-based column of the offending token and ``end`` the column after it;
    :meth:`marked` shows them in one line (the token between ``»«``, as the
    command line appends it to its one-line message) and :meth:`pointer` in
    two (the text and ``^^^`` under the token)."""

    def __init__(self, msg, source=None, col=None, end=None):
        super().__init__(msg)
        self.source, self.col, self.end = source, col, end

    def marked(self, width=70):
        """One line: the text with the offending token between ``»`` and
        ``«`` (a window of about ``width`` characters around it), or ``""``."""
        if self.source is None or self.col is None or "\n" in self.source:
            return ""
        col = max(0, min(self.col, len(self.source)))
        end = self.end if self.end is not None and self.end > col else min(col + 1, len(self.source))
        a, b = max(0, col - width // 2), min(len(self.source), end + width // 2)
        return (("…" if a else "") + self.source[a:col] + "»" + self.source[col:end] + "«"
                + self.source[end:b] + ("…" if b < len(self.source) else ""))

    def pointer(self, indent="  "):
        if self.source is None or self.col is None or "\n" in self.source:
            return ""
        col = max(0, min(self.col, len(self.source)))
        end = self.end if self.end is not None and self.end > col else col + 1
        end = min(end, max(len(self.source), col + 1))
        return f"{indent}{self.source}\n{indent}{' ' * col}{'^' * (end - col)}"


class Function:
    """A whitelisted callable: only these may be called from parsed text."""

    def __init__(self, name, fn, doc=""):
        self.name, self.fn, self.doc = name, fn, doc

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"<function {self.name}>"


class Constructor(Function):
    """A declaration ``NAME=Ctor(args)``: the name becomes the first argument."""


# ---------------------------------------------------------------- namespaces
def _functions():
    import symrmt as sr
    fns = {
        "ntr": (sr.ntr, "normalised trace Tr M / rows(M)"),
        "Tr": (sr.Tr, "trace"),
        "I": (sr.I, "identity I(d)"),
        "inv": (lambda M: M.inverse(), "inverse"),
        "sqrt": (sr.sqrt, "principal square root of a PSD expression"),
        "power": (_power, "real power power(M, s) of a PSD expression"),
        "var": (sr.var, "variance across draws"),
        "cov": (sr.cov, "covariance across draws"),
        "sample_mean": (sr.sample_mean, "sample mean X.T 1/n"),
        "sample_covariance": (sr.sample_covariance, "sample covariance (ddof=0 or 1)"),
        "matrix_function": (sr.matrix_function, 'matrix_function("f(x)", M): f applied to the eigenvalues '
                                                'of M, e.g. "(1 - (1 - lr*x)**5)/x"'),
    }
    return {k: Function(k, f, doc) for k, (f, doc) in fns.items()}


def _power(M, s):
    import symrmt as sr
    if isinstance(s, sp.Basic) and s.is_number and abs(complex(s)) > MAX_EXPONENT:
        raise ValueError(f"exponent larger than {MAX_EXPONENT}")
    return sr.power(M, s)


def _constructors():
    import symrmt as sr
    ctors = {
        "Covariance": (sr.Covariance, "Covariance(d)"),
        "Deterministic": (sr.Deterministic, "Deterministic(rows, cols)"),
        "Vector": (sr.Vector, "Vector(d)"),
        "GaussianData": (sr.GaussianData, "GaussianData(n, Sigma, K=None, mean=None)"),
        "GaussianNoise": (sr.GaussianNoise, "GaussianNoise(n, variance, K=None)"),
        "RandomFeatures": (sr.RandomFeatures, "RandomFeatures(d, p)"),
        "scalar": (sr.scalar, "scalar()"),
        "dim": (sr.dims, "dim()"),
    }
    return {k: Constructor(k, f, doc) for k, (f, doc) in ctors.items()}


def default_namespace() -> dict:
    """Names usable without declaration (see ``symrmt derive --help``)."""
    import symrmt as sr
    ns = dict(_functions())
    n, d, p = sr.dims("n d p")
    ns.update(n=n, d=d, p=p)
    for s in ("lam", "lam1", "lam2", "sigma2", "eta", "t"):
        ns[s] = sr.scalar(s)
    Sigma, K = sr.Covariance("Sigma", d), sr.Covariance("K", n)
    X = sr.GaussianData("X", n, Sigma)
    ns.update(Sigma=Sigma, K=K, A=sr.Deterministic("A", d, d), B=sr.Deterministic("B", d, d),
              w=sr.Vector("w", d), v=sr.Vector("v", d), x=sr.Vector("x", d), X=X,
              Xc=sr.GaussianData("Xc", n, Sigma, K=K), X1=sr.GaussianData("X1", n, Sigma),
              X2=sr.GaussianData("X2", n, Sigma), F=sr.RandomFeatures("F", d, p),
              eps=sr.GaussianNoise("eps", n, ns["sigma2"]))
    Sh = X.T * X / n
    ns["Sh"] = Sh
    for name, lam in (("G", "lam"), ("G1", "lam1"), ("G2", "lam2")):
        ns[name] = (Sh + ns[lam] * sr.I(d)).inverse()
    return ns


DEFAULT_HELP = """\
dims n d p; scalars lam lam1 lam2 sigma2 eta t; Sigma (Covariance d×d), K (Covariance n×n),
A B (Deterministic d×d), w v x (Vector d), X (GaussianData n×d, covariance Sigma),
Xc (correlated: X = K^1/2 Z Sigma^1/2), X1 X2 (independent copies of X), F (RandomFeatures d×p),
eps (GaussianNoise n, variance sigma2), Sh = X.T*X/n, G = inv(Sh + lam*I(d)), G1/G2 (at lam1/lam2);
functions ntr Tr I inv sqrt power var cov sample_mean sample_covariance, M.T, M.inverse(),
matrix_function("f(x)", M) (f of the eigenvalues x of M; exp log sqrt sin cos pi and the scalars)"""


# ---------------------------------------------------------------- the walker
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b, ast.MatMult: lambda a, b: a @ b}
_SYNTAX = {ast.Subscript: "indexing", ast.Lambda: "lambda", ast.Compare: "comparisons",
           ast.BoolOp: "boolean operators", ast.IfExp: "conditional expressions",
           ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions", ast.Dict: "dicts",
           ast.Set: "sets", ast.Starred: "* arguments", ast.JoinedStr: "f-strings"}


def _describe(node):
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    what = _SYNTAX.get(type(node))
    return what or type(node).__name__


def _parse(text, what):
    if not isinstance(text, str) or not text.strip():
        raise ParseError(f"{what}: empty")
    if len(text) > MAX_CHARS:
        raise ParseError(f"{what}: longer than {MAX_CHARS} characters")
    src = text.strip()
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        start = exc.offset - 1 if exc.offset else None
        end = exc.end_offset - 1 if exc.offset and getattr(exc, "end_offset", None) and \
            getattr(exc, "end_lineno", 1) == 1 else None
        raise ParseError(f"{what}: syntax error{col}: {src!r}", src, start, end) from None
    except (RecursionError, MemoryError):
        raise ParseError(f"{what}: too deeply nested") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ParseError(f"{what}: expression too large")
    return tree.body


_CTOR_NAMES = ("Covariance", "Deterministic", "Vector", "GaussianData", "GaussianNoise", "RandomFeatures",
               "scalar", "dim")


def _unknown(name, namespace, what, node=None, source=None):
    col = getattr(node, "col_offset", None)
    where = f" (column {col + 1})" if col is not None else ""
    pos = (source, col, getattr(node, "end_col_offset", None))
    if name in _CTOR_NAMES:
        raise ParseError(f"{what}: {name} declares a new object; use --let NAME={name}(...){where}", *pos)
    close = difflib.get_close_matches(name, [k for k in namespace if not k.startswith("_")], n=4, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ParseError(f"{what}: unknown name {name!r}{hint}{where}", *pos)


class _Walker:
    """Evaluates an expression tree over ``namespace``; ``numeric`` switches
    literals to NumPy numbers (bindings) instead of exact SymPy numbers."""

    def __init__(self, namespace, what, numeric=False, source=None):
        self.ns, self.what, self.numeric, self.source = namespace, what, numeric, source

    def fail(self, node, msg):
        col = getattr(node, "col_offset", None)
        end = getattr(node, "end_col_offset", None)
        if getattr(node, "end_lineno", None) not in (None, getattr(node, "lineno", None)):
            end = None
        token = ""
        if self.source is not None and col is not None and end is not None and end - col <= 40:
            token = f": {self.source[col:end]!r}"
        raise ParseError(f"{self.what}: {msg}" + (f" (column {col + 1}{token})" if col is not None else ""),
                         self.source, col, end)

    def __call__(self, node):
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id not in self.ns:
                _unknown(node.id, self.ns, self.what, node, self.source)
            val = self.ns[node.id]
            if isinstance(val, Constructor):
                self.fail(node, f"{node.id} declares a new object: use --let NAME={node.id}(...)")
            return val
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = self(node.left), self(node.right)
            if isinstance(node.op, ast.Pow):
                self.check_power(node, a, b)
            return self.apply(node, _BINOPS[type(node.op)], a, b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            a = self(node.operand)
            return self.apply(node, (lambda x: -x) if isinstance(node.op, ast.USub) else (lambda x: x), a)
        if isinstance(node, ast.Attribute):
            if node.attr != "T" or self.numeric:
                self.fail(node, f"attribute .{node.attr} is not allowed (only .T and .inverse())")
            return self.apply(node, lambda m: m.T, self.matrix(node.value, ".T"))
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, (ast.List, ast.Tuple)) and self.numeric:
            return np.array([self.number(e) for e in node.elts], dtype=float)
        self.fail(node, f"{_describe(node)} is not allowed")

    def constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(node, f"{_describe(node)} is not allowed (numbers only)")
        if self.numeric:
            return v
        # exact: 0.5 is 1/2, so power(M, 0.5) is the principal square root
        return sp.Integer(v) if isinstance(v, int) else sp.Rational(repr(v))

    def number(self, node):
        v = self(node)
        if not (np.ndim(v) == 0 and isinstance(v, (int, float, np.integer, np.floating))):
            self.fail(node, "expected a number")
        return float(v)

    def matrix(self, node, op):
        m = self(node)
        if not isinstance(m, MatrixExpr):
            self.fail(node, f"{op} needs a matrix, got {m}")
        return m

    def check_power(self, node, a, b):
        # exact big integers, or expansions of M**1000000, would not finish
        num = (lambda x: np.ndim(x) == 0 and isinstance(x, (int, float, np.number))) if self.numeric \
            else (lambda x: isinstance(x, sp.Basic) and x.is_number)
        if num(b) and abs(complex(b)) > MAX_EXPONENT:
            self.fail(node, f"numeric exponent larger than {MAX_EXPONENT}")

    def apply(self, node, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ParseError:
            raise
        except Exception as exc:  # SymPy/NumPy reject shapes or types: say where
            msg = " ".join(str(exc).split()) or type(exc).__name__
            if isinstance(fn, Constructor):
                msg += f"; usage: NAME={fn.doc}"
            self.fail(node, f"cannot evaluate {ast.unparse(node)!r}: {msg}")

    def call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute):
            if f.attr != "inverse" or self.numeric:
                self.fail(node, f"method .{f.attr}() is not allowed (only .inverse())")
            if node.args or node.keywords:
                self.fail(node, ".inverse() takes no arguments")
            return self.apply(node, lambda m: m.inverse(), self.matrix(f.value, ".inverse()"))
        if not isinstance(f, ast.Name):
            self.fail(node, "only named functions may be called")
        if f.id not in self.ns:
            _unknown(f.id, self.ns, self.what, f, self.source)
        fn = self.ns[f.id]
        if isinstance(fn, Constructor):
            self.fail(node, f"{f.id} declares a new object: use --let NAME={f.id}(...)")
        if not isinstance(fn, Function):
            self.fail(node, f"{f.id} is not a function")
        if getattr(fn, "name", None) == "matrix_function" and not self.numeric:
            return self.matrix_function(node, fn)
        return self.invoke(node, fn, [])

    def matrix_function(self, node, fn):
        """``matrix_function("body in x", M)``: the body is a scalar
        expression of the eigenvalue ``x`` (and of the namespace's scalars),
        with ``exp log sqrt sin cos`` and ``pi``; it becomes a SymPy ``Lambda``."""
        if node.keywords or len(node.args) != 2:
            self.fail(node, 'matrix_function takes two arguments: matrix_function("f(x)", M), '
                            'e.g. matrix_function("(1 - (1 - lr*x)**5)/x", Sh)')
        body_node, m_node = node.args
        if not (isinstance(body_node, ast.Constant) and isinstance(body_node.value, str)):
            self.fail(body_node, 'the function must be a quoted scalar expression of x, e.g. "exp(-t*x)"')
        x = sp.Dummy("x", real=True)
        scalars = {k: v for k, v in self.ns.items()
                   if isinstance(v, sp.Expr) and not isinstance(v, MatrixExpr)}
        scalars.update(x=x, pi=sp.pi, **{k: Function(k, getattr(sp, k), f"scalar {k}")
                                         for k in ("exp", "log", "sqrt", "sin", "cos")})
        what = f"{self.what}: matrix_function body"
        body = _walk(_Walker(scalars, what, source=body_node.value.strip()), _parse(body_node.value, what))
        if not isinstance(body, sp.Expr) or isinstance(body, MatrixExpr):
            self.fail(body_node, f"the function body must be a scalar expression of x, got {body}")
        M = self.matrix(m_node, "matrix_function")
        return self.apply(node, fn, sp.Lambda(x, body), M)

    def invoke(self, node, fn, lead):
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            self.fail(node, "* and ** arguments are not allowed")
        args = lead + [self(a) for a in node.args]
        kwargs = {k.arg: self.keyword(k.value) for k in node.keywords}
        return self.apply(node, fn, *args, **kwargs)

    def keyword(self, node):
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value   # ddof-like flags: complex=True
        return self(node)


def parse_expression(text: str, namespace: dict | None = None):
    """A SymPy expression from ``text`` over ``namespace`` (default:
    :func:`default_namespace`). Raises :class:`ParseError`."""
    ns = default_namespace() if namespace is None else namespace
    return _walk(_Walker(ns, "expression", source=text.strip() if isinstance(text, str) else None),
                 _parse(text, "expression"))


def _walk(walker, node):
    try:
        return walker(node)
    except RecursionError:
        raise ParseError(f"{walker.what}: too deeply nested") from None


def declare(text: str, namespace: dict):
    """Apply a declaration ``NAME=Ctor(args)`` or ``NAME=expression`` to
    ``namespace`` (in place); returns ``(NAME, object)``.

    Constructors take the name from the left side:
    ``Y=GaussianData(n, Sigma, K=K)``, ``C=Covariance(d)``, ``q=scalar()``,
    ``m=dim()``, ``H=Deterministic(d, d)``, ``u=Vector(d)``,
    ``e2=GaussianNoise(n, sigma2)``, ``R=RandomFeatures(d, p)``.
    """
    what = f"--let {text!r}"
    if not isinstance(text, str) or "=" not in text:
        raise ParseError(f"{what}: expected NAME=Ctor(args) or NAME=expression")
    name, rhs = (s.strip() for s in text.split("=", 1))
    if not name.isidentifier() or name.startswith("_"):
        raise ParseError(f"{what}: {name!r} is not a valid name")
    if isinstance(namespace.get(name), Function):
        raise ParseError(f"{what}: {name!r} is a function and cannot be redefined")
    node = _parse(rhs, what)
    ctors = _constructors()
    walker = _Walker({**ctors, **namespace}, what, source=rhs)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ctors:
        obj = walker.invoke(node, ctors[node.func.id], [name])
    else:
        walker.ns = namespace
        obj = _walk(walker, node)
    namespace[name] = obj
    return name, obj


# ---------------------------------------------------------------- bindings
def _size(d, what):
    if float(d) != int(d) or int(d) <= 0 or int(d) > MAX_ARRAY:
        raise ValueError(f"{what}: size must be a positive integer ≤ {MAX_ARRAY}, got {d}")
    return int(d)


def _powerlaw(d, alpha):
    """s_i = i^-alpha, i = 1..d."""
    return np.arange(1, _size(d, "powerlaw") + 1, dtype=float) ** (-float(alpha))


def _iso(d, s=1.0):
    """d equal eigenvalues s."""
    return np.full(_size(d, "iso"), float(s))


def _levels(d, *levels):
    """d eigenvalues in len(levels) (near-)equal blocks of the given values."""
    if not levels:
        raise ValueError("levels(d, s1, s2, ...) needs at least one level")
    counts = [len(c) for c in np.array_split(np.arange(_size(d, "levels")), len(levels))]
    return np.repeat(np.array(levels, dtype=float), counts)


def _unit(d, i):
    """The i-th basis vector of length d (0-based, as in NumPy)."""
    d = _size(d, "e")
    if float(i) != int(i) or not 0 <= int(i) < d:
        raise ValueError(f"e(d, i): index must be an integer in [0, {d}), got {i}")
    out = np.zeros(d)
    out[int(i)] = 1.0
    return out


def _randn(d, seed=0):
    """A reproducible random vector, entries N(0, 1/d) (norm ≈ 1)."""
    d = _size(d, "randn")
    return np.random.default_rng(int(seed)).standard_normal(d) / math.sqrt(d)


def _grid(fn, name):
    def g(a, b, k):
        return fn(float(a), float(b), _size(k, name))
    return g


BIND_FUNCTIONS = {
    "logspace": Function("logspace", _grid(np.logspace, "logspace"), "logspace(a, b, k): 10^a … 10^b"),
    "linspace": Function("linspace", _grid(np.linspace, "linspace"), "linspace(a, b, k)"),
    "powerlaw": Function("powerlaw", _powerlaw, "powerlaw(d, alpha): s_i = i^-alpha"),
    "iso": Function("iso", _iso, "iso(d, s): d eigenvalues s"),
    "levels": Function("levels", _levels, "levels(d, s1, s2, ...): equal blocks"),
    "ones": Function("ones", lambda d: np.ones(_size(d, "ones")), "ones(d)"),
    "e": Function("e", _unit, "e(d, i): basis vector, 0-based"),
    "randn": Function("randn", _randn, "randn(d, seed): entries N(0, 1/d)"),
}

BIND_HELP = ("numbers and arithmetic, [a, b, ...], logspace(a,b,k), linspace(a,b,k), "
             "powerlaw(d,alpha) (s_i = i^-alpha), iso(d,s), levels(d,s1,s2,...), ones(d), "
             "e(d,i) (0-based), randn(d,seed) (entries N(0,1/d))")


def parse_binding(text: str):
    """``name=value`` → ``(name, value)`` with ``value`` a number or NumPy array."""
    what = f"binding {text!r}"
    if not isinstance(text, str) or "=" not in text:
        raise ParseError(f"{what}: expected name=value, e.g. lam=0.1 or Sigma=powerlaw(400,1.5)")
    name, rhs = (s.strip() for s in text.split("=", 1))
    if not name.isidentifier():
        raise ParseError(f"{what}: {name!r} is not a valid name")
    ns = {**BIND_FUNCTIONS, "pi": math.pi}
    value = _walk(_Walker(ns, what, numeric=True, source=rhs), _parse(rhs, what))
    if isinstance(value, Function):
        raise ParseError(f"{what}: {value.name} must be called, e.g. {value.doc.split(':')[0]}")
    return name, value


def parse_bindings(items) -> dict:
    """Several ``name=value`` items; a name given twice is an error."""
    out = {}
    for item in items:
        name, value = parse_binding(item)
        if name in out:
            raise ParseError(f"binding {name!r} given twice")
        out[name] = value
    return out
