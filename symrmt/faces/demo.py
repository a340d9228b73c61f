"""The main job: derive and print the basic one-point equivalents.

Grows with the project (compile, verify, report)."""
from __future__ import annotations

import sys



def main(argv=None) -> int:
    import symrmt as sr

    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    Sh = X.T * X / n
    G = (Sh + lam * sr.I(d)).inverse()
    for title, expr in [("(1/d) Tr[Σ (Σ̂+λ)⁻¹]", sr.ntr(Sigma * G)),
                        ("(1/d) Tr[Σ̂ (Σ̂+λ)⁻¹]", sr.ntr(Sh * G))]:
        de = sr.deterministic_equivalent(expr)
        print(f"== {title}")
        print(repr(de))
        print("LaTeX:")
        print(de.latex())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
