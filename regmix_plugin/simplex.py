"""Draws on the probability simplex: the one Dirichlet sampler of the mixture design and the
optimizer's simulation."""

from __future__ import annotations

import numpy as np


def dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Dirichlet draws, one per row of ``alpha``, safe for concentrations far below 1.

    Gamma variates come from ``Gamma(a) = Gamma(a + 1) * U**(1/a)`` in log space, so a row
    never underflows to all zeros. Uses ``rng.standard_gamma`` then ``rng.random`` (the order is
    part of the stream a seed gives).
    """
    g = rng.standard_gamma(alpha + 1.0)
    u = 1.0 - rng.random(alpha.shape)  # in (0, 1]: log never -inf
    log_x = np.log(g) + np.log(u) / alpha
    log_x -= log_x.max(axis=1, keepdims=True)
    x = np.exp(log_x)
    return np.asarray(x / x.sum(axis=1, keepdims=True))


def dirichlet_mixed_strengths(
    rng: np.random.Generator, prior: np.ndarray, strengths: np.ndarray, num_rows: int
) -> np.ndarray:
    """``num_rows`` draws of ``Dirichlet(s * prior)``, ``s`` picked uniformly from ``strengths``
    per row (RegMix's design)."""
    k = rng.integers(len(strengths), size=num_rows)
    alpha = strengths[k][:, None] * prior[None, :]
    return dirichlet(rng, alpha)


def tempered(prior: np.ndarray, temperature: float) -> np.ndarray:
    """``prior ** temperature``, renormalised (1 keeps it, 0 makes it uniform)."""
    p = prior**temperature
    return np.asarray(p / p.sum())
