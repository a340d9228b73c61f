"""Derivation time of the engine's standard results (issue 2 aim: < 0.5 s each;
issue 5 aim: ridge risk from its raw definition < 1 s).

Run: ``python benchmarks/derive.py``. Each expression is derived 5 times on a
fresh engine (new objects, so no cache hit); the median is printed."""
from __future__ import annotations

import statistics
import time

import symrmt as sr


def models():
    n, d, p, p2, p3 = sr.dims("n d p p2 p3")
    lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
    Sigma, K = sr.Covariance("Sigma", d), sr.Covariance("K", n)
    w = sr.Vector("w", d)
    X = sr.GaussianData("X", n, Sigma)
    XK = sr.GaussianData("X", n, Sigma, K=K)
    F1, F2, F3 = sr.RandomFeatures("F1", d, p), sr.RandomFeatures("F2", p, p2), sr.RandomFeatures("F3", p2, p3)
    out = {}
    for tag, Xm, C, P in [("iid", X, None, d), ("corr", XK, None, d), ("rf1", X, F1, p), ("rf3", X, F1 * F2 * F3, p3)]:
        Sh = Xm.T * Xm / n if C is None else C.T * Xm.T * Xm * C / n
        G = (Sh + lam * sr.I(P)).inverse()
        Sig = Sigma if C is None else C.T * Sigma * C
        v = w if C is None else C.T * w
        out[f"{tag}: (1/d)Tr[(Σ̂+λ)⁻¹]"] = sr.ntr(G)
        out[f"{tag}: (1/d)Tr[Σ(Σ̂+λ)⁻¹]"] = sr.ntr(Sig * G)
        out[f"{tag}: (1/d)Tr[Σ̂(Σ̂+λ)⁻¹]"] = sr.ntr(Sh * G)
        out[f"{tag}: w̄ᵀ(Σ̂+λ)⁻¹w̄"] = v.T * G * v
    eps = sr.GaussianNoise("eps", n, s2)
    G = (X.T * X / n + lam * sr.I(d)).inverse()
    w_hat = G * X.T * (X * w + eps) / n
    out["ridge risk (raw definition)"] = (w_hat - w).T * Sigma * (w_hat - w) + s2
    return out


def main():
    names = list(models())
    print(f"{'expression':42s} {'median s':>9s} {'max s':>7s}")
    for name in names:
        times = []
        for _ in range(5):
            expr = models()[name]
            t = time.perf_counter()
            sr.deterministic_equivalent(expr)
            times.append(time.perf_counter() - t)
        target = 1.0 if "risk" in name else 0.5
        flag = "ok" if statistics.median(times) < target else "SLOW"
        print(f"{name:42s} {statistics.median(times):9.3f} {max(times):7.3f}  (aim < {target} s: {flag})")


if __name__ == "__main__":
    main()
