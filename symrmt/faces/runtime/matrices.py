"""Matrix values over a batch of grid points (part of the generated runtime).

A value is an :class:`_M`: ``eye`` (``c·I``), ``diag`` (diagonal entries in
the common basis) or ``full``; the batch axis comes first (length 1 or B).
Operations keep the cheapest kind they can, so with every matrix bound 1-D
the whole value is elementwise arithmetic over eigenvalues, and a 2-D
binding only makes dense the products it enters — never assuming that a full
matrix commutes with anything. Traces and quadratic forms are reduced
without forming the products where the structure allows (``_trmul``).
"""
# ---- RUNTIME BEGINS ----
import numpy as np


class _M:
    """A matrix over a batch of grid points (batch axis first, length 1 or B)."""

    __slots__ = ("kind", "a", "size")

    def __init__(self, kind, a, size=None):
        self.kind, self.a, self.size = kind, a, size
        if kind == "full" and a.shape[0] > 1 and min(a.shape[-2:]) > 1:
            _SEEN["dense batch"] = True


_SEEN = {}   # whether some value formed a d×d matrix per grid point (sizes the chunks)


def _col(c, k):
    c = np.asarray(c)
    return c.reshape(c.shape + (1,) * k)


def _eye(c, size):
    return _M("eye", np.asarray(c) * np.ones(1), size)


def _scale(c, m):
    if m.kind == "eye":
        return _M("eye", c * m.a, m.size)
    return _M(m.kind, _col(c, 1 if m.kind == "diag" else 2) * m.a)


def _dense(m, n):
    if m.kind == "full":
        return m.a
    if m.kind == "diag":
        return m.a[..., :, None] * np.eye(n)
    return _col(m.a, 2) * np.eye(n)


def _diagv(m):
    return m.a if m.kind == "diag" else _col(m.a, 1)


def _add(*ms):
    out = ms[0]
    for y in ms[1:]:
        x = out
        if x.kind == "eye" and y.kind == "eye":
            out = _M("eye", x.a + y.a, x.size)
        elif "full" in (x.kind, y.kind):
            n = (x if x.kind == "full" else y).a.shape[-1]
            out = _M("full", _dense(x, n) + _dense(y, n))
        else:
            out = _M("diag", _diagv(x) + _diagv(y))
    return out


def _mm(x, y):
    if x.kind == "eye":
        return _scale(x.a, y)
    if y.kind == "eye":
        return _scale(y.a, x)
    if x.kind == "diag" and y.kind == "diag":
        return _M("diag", x.a * y.a)
    if x.kind == "diag":
        return _M("full", x.a[..., :, None] * y.a)
    if y.kind == "diag":
        return _M("full", x.a * y.a[..., None, :])
    xa, ya = x.a, y.a
    # a fixed matrix against a batch of columns (rows) is one matrix product, not many
    if xa.shape[0] == 1 < ya.shape[0] and ya.shape[-1] == 1:
        return _M("full", (xa[0] @ ya[..., 0].T).T[..., None])
    if ya.shape[0] == 1 < xa.shape[0] and xa.shape[-2] == 1:
        return _M("full", (xa[:, 0, :] @ ya[0])[:, None, :])
    return _M("full", np.matmul(xa, ya))


def _unit(c):
    return isinstance(c, int) and c == 1


def _chain(c, ms, rtl=False):
    """``c · ms[0] ms[1] …``, right to left when it ends in a column (so a
    quadratic form is matrix-vector products, never matrix-matrix)."""
    if rtl:
        out = ms[-1]
        for m in ms[-2::-1]:
            out = _mm(m, out)
    else:
        out = ms[0]
        for m in ms[1:]:
            out = _mm(out, m)
    return out if _unit(c) else _scale(c, out)


def _inv(m):
    if m.kind == "full":
        return _M("full", np.linalg.inv(m.a))
    return _M(m.kind, 1 / m.a, m.size)


def _pow(m, s):
    if float(s) == int(s):
        s = int(s)
        if s < 0:
            m, s = _inv(m), -s
        if m.kind != "full":
            return _M(m.kind, m.a ** s, m.size)
        return _M("full", np.linalg.matrix_power(m.a, s))
    # fractional: principal power of a symmetric PSD matrix
    if m.kind != "full":
        if np.any(np.real(m.a) < 0):
            raise ValueError(f"fractional power {s} of a matrix with a negative eigenvalue")
        return _M(m.kind, m.a ** s, m.size)
    a = m.a
    scale = max(float(np.abs(a).max()), np.finfo(float).tiny)
    if float(np.abs(a - np.swapaxes(a, -1, -2)).max()) > 1e-10 * scale:
        raise ValueError(f"fractional power {s} of a non-symmetric matrix")
    w, V = np.linalg.eigh((a + np.swapaxes(a, -1, -2)) / 2)
    if np.any(w < -1e-10 * scale):
        raise ValueError(f"fractional power {s} of a matrix that is not positive semi-definite "
                         f"(eigenvalue {w.min():.3g})")
    w = np.clip(w, 0, None)
    return _M("full", np.matmul(V * (w ** s)[..., None, :], np.swapaxes(V, -1, -2)))


def _T(m):
    return _M("full", np.swapaxes(m.a, -1, -2)) if m.kind == "full" else m


def _tr(m):
    if m.kind == "eye":
        return m.a * m.size
    if m.kind == "diag":
        return m.a.sum(-1)
    return np.trace(m.a, axis1=-2, axis2=-1)


def _trmul(c, ms):
    """``c · Tr[ms[0] … ms[-1]]``. Diagonal factors between full ones are
    reduced without forming products: with one full factor ``F`` the trace is
    ``Σ_i F_ii δ_i``, with two ``Tr[F₁D₁F₂D₂] = Σ_ij (F₁∘F₂ᵀ)_ij d₁_j d₂_i``
    (the two-point case: O(d²) per grid point instead of O(d³))."""
    full = [i for i, m in enumerate(ms) if m.kind == "full"]
    if not full or len(full) > 2:
        t = _tr_pair(_chain(1, ms[:-1]), ms[-1])
        return t if _unit(c) else c * t
    ms = ms[full[0]:] + ms[:full[0]]          # cyclic: start at a full factor
    segs, coef = [], 1.0
    for m in ms:
        if m.kind == "full":
            segs.append([m.a, None])
        elif m.kind == "eye":
            coef = coef * m.a
        else:
            segs[-1][1] = m.a if segs[-1][1] is None else segs[-1][1] * m.a
    if len(segs) == 1:
        F, dv = segs[0]
        t = np.trace(F, axis1=-2, axis2=-1) if dv is None else (np.diagonal(F, axis1=-2, axis2=-1) * dv).sum(-1)
    else:
        (F1, d1), (F2, d2) = segs
        H = F1 * np.swapaxes(F2, -1, -2)
        d1 = np.ones(H.shape[-1]) if d1 is None else d1
        d2 = np.ones(H.shape[-2]) if d2 is None else d2
        if H.shape[0] == 1:
            t = ((np.atleast_2d(d2) @ H[0]) * d1).sum(-1)
        else:
            t = np.einsum("...i,...ij,...j->...", d2, H, d1)
    t = coef * t
    return t if _unit(c) else c * t


def _tr_pair(p, q):
    """``Tr[p q]`` without forming ``p q``."""
    if p.kind == "eye":
        return p.a * _tr(q)
    if q.kind == "eye":
        return q.a * _tr(p)
    if p.kind == "diag" and q.kind == "diag":
        return (p.a * q.a).sum(-1)
    if p.kind == "diag":
        return (p.a * np.diagonal(q.a, axis1=-2, axis2=-1)).sum(-1)
    if q.kind == "diag":
        return (np.diagonal(p.a, axis1=-2, axis2=-1) * q.a).sum(-1)
    return np.einsum("...ij,...ji->...", p.a, q.a)


def _form(m):
    if m.kind == "full":
        return m.a[..., 0, 0]
    return m.a if m.kind == "eye" else m.a[..., 0]
