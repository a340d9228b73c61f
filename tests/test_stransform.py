"""S-transform catalogue against its defining relation S(ψ(z)) = (1+ψ)/ψ · z
(docs/math.md): ψ from closed forms (Marchenko–Pastur) or exact spectra, and the
product rule against sampled free products."""
import numpy as np
import pytest
import sympy as sp

from symrmt.transforms import stransform as st


def mp_psi(q, z):
    """ψ_W(z) = tr[zW(1−zW)⁻¹] for W = ZᵀZ/n (d×d, q = d/n), from the
    Marchenko–Pastur resolvent g(x) = tr[(x − W)⁻¹]:
    q x g² − (x + q − 1) g + 1 = 0, root with g ~ 1/x at large x."""
    x = 1 / z
    a, b, c = q * x, -(x + q - 1), 1.0
    roots = np.roots([a, b, c])
    g = roots[np.argmin(abs(roots - 1 / x))] if x < 0 else None
    return -1 + x * g


@pytest.mark.parametrize("q", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("lam", [0.05, 0.7, 4.0])
def test_wishart_defining_relation(q, lam):
    z = -1 / lam
    psi = mp_psi(q, z)
    S = st.wishart(q)
    assert float(S(psi)) * psi / (1 + psi) == pytest.approx(z, rel=1e-10)


@pytest.mark.parametrize("q", [0.4, 2.0])
def test_gram_is_wishart_in_the_other_space(q):
    lam = 0.3
    z = -1 / lam
    # Gram ZZᵀ/n has the nonzero spectrum of W with weight d/n = q
    psi_gram = q * mp_psi(q, z)
    assert float(st.gram(q)(psi_gram)) * psi_gram / (1 + psi_gram) == pytest.approx(z, rel=1e-10)
    w = sp.Symbol("w")
    assert sp.simplify(st.rectangular(st.gram(q), q)(w) - st.wishart(q)(w)) == 0


def test_rescale():
    w = sp.Symbol("w")
    assert sp.simplify(st.rescale(st.wishart(0.5), 3)(w) - 1 / (3 * (1 + 0.5 * w))) == 0


def test_from_spectrum_matches_psi_of_eigenvalues():
    rng = np.random.default_rng(0)
    kv = rng.uniform(0.1, 3, 50)
    lam = 0.4
    z = -1 / lam
    psi = st.psi_from_eigenvalues(kv, z).real  # = −df(λ)
    t = -psi
    mu = sp.Symbol("mu", positive=True)
    val, eq = st.from_spectrum(sp.Float(0), sp.Float(t), mu)
    S = float(val.subs(mu, lam))  # μ = λ solves df(μ) = t by construction
    assert S * psi / (1 + psi) == pytest.approx(z, rel=1e-12)


def test_product_rule_against_sampled_free_product():
    """W₁ = Z₁ᵀZ₁/n₁ and W₂ (independent, rotation invariant) are free: the
    sampled ψ of W₁^{1/2} W₂ W₁^{1/2} satisfies S₁S₂(ψ) ψ/(1+ψ) = z up to
    finite-size error (d = 1500: tolerance 1e-2 relative)."""
    rng = np.random.default_rng(1)
    d, n1, n2 = 1500, 3000, 2500
    Z1 = rng.standard_normal((n1, d))
    Z2 = rng.standard_normal((n2, d))
    W1 = Z1.T @ Z1 / n1
    W2 = Z2.T @ Z2 / n2
    e1, V1 = np.linalg.eigh(W1)
    h = (V1 * np.sqrt(np.clip(e1, 0, None))) @ V1.T
    ev = np.linalg.eigvalsh(h @ W2 @ h)
    z = -1 / 0.5
    psi = st.psi_from_eigenvalues(ev, z).real
    S = st.product(st.wishart(d / n1), st.wishart(d / n2))
    assert float(S(psi)) * psi / (1 + psi) == pytest.approx(z, rel=1e-2)


def test_correlated_samples_reduces_to_wishart_for_K_identity():
    w = sp.Symbol("w")
    one = sp.Lambda(w, 1)
    assert sp.simplify(st.correlated_samples(0.7, one)(w) - st.wishart(0.7)(w)) == 0
