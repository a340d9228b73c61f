"""Layer 6: Monte Carlo — the same expression, evaluated on random draws.

``monte_carlo(expr, trials, seed, executor, progress, **bindings)`` samples
every random object of ``expr``, evaluates ``expr`` on each draw through a
lazy spectral representation (one eigendecomposition per draw serves every
grid point), and streams the mean and standard error.

Modules: ``bindings`` (names → checked arrays), ``values``/``contract``
(lazy matrix values and their contractions), ``nodes``/``program``
(compiled expression, spectral cores), ``plan`` (eigenvalues-only or
eigenvectors, grid blocks), ``sampler`` (laws and seed streams),
``estimand`` (``E``/``Var``/``Cov`` and the jackknife), ``stats``
(streaming mean), ``run`` (chunks on executors), ``progress``, ``result``,
``single`` (one draw in the open, for debugging and tests).
"""
from .result import MonteCarloResult, MonteCarloSeries
from .run import monte_carlo
from .single import evaluate_draw

__all__ = ["monte_carlo", "evaluate_draw", "MonteCarloResult", "MonteCarloSeries"]
