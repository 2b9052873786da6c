"""Pure numbers for the report: Wilson intervals, funnel-plot limits, two-proportion z-test.

No I/O and no pandas: every function takes counts and returns floats, so the tests can check
them against hand-computed values.
"""

from __future__ import annotations

import math

#: Two-sided normal quantiles used by the report.
Z95 = 1.959963984540054  # 95 %  (funnel inner limit, Wilson interval)
Z998 = 3.090232306167813  # 99.8 % (funnel outer limit, "3 sigma")


def rate(compliant: float, denominator: float) -> float | None:
    """``compliant / denominator``, or None when the denominator is 0."""
    return None if not denominator else compliant / denominator


def wilson(k: float, n: float, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for ``k`` successes out of ``n`` (None, None when n == 0).

    ``(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = k/n``; the limits are
    clipped to [0, 1]. Unlike the Wald interval it stays inside [0, 1] and is sensible at
    k = 0 or k = n, which is where compliance rates usually sit.
    """
    if n <= 0:
        return None, None
    if k < 0 or k > n:
        raise ValueError(f"k must be within 0..n (k={k}, n={n})")
    p = k / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denom = 1 + z2 / n
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)


def funnel_limits(p0: float, n: float, z: float = Z95) -> tuple[float | None, float | None]:
    """Control limits ``p0 ± z·sqrt(p0(1−p0)/n)`` around the overall rate for a provider of volume n.

    The normal approximation to the binomial used in funnel plots (Spiegelhalter 2005); the
    limits are clipped to [0, 1]. Returns (None, None) for n == 0.
    """
    if n <= 0:
        return None, None
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"p0 must be a proportion, got {p0}")
    half = z * math.sqrt(p0 * (1 - p0) / n)
    return max(0.0, p0 - half), min(1.0, p0 + half)


def normal_sf(x: float) -> float:
    """Upper tail of the standard normal distribution, P(Z > x)."""
    return 0.5 * math.erfc(x / math.sqrt(2))


def two_proportion_z(k1: float, n1: float, k2: float, n2: float) -> tuple[float | None, float | None]:
    """Pooled two-proportion z-test of ``k2/n2`` against ``k1/n1``: returns (z, two-sided p).

    ``z = (p2 − p1) / sqrt(p(1−p)(1/n1 + 1/n2))`` with the pooled ``p = (k1+k2)/(n1+n2)``.
    (None, None) when either n is 0; (0.0, 1.0) when both rates are 0 or both are 1.
    """
    if n1 <= 0 or n2 <= 0:
        return None, None
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (p2 - p1) / se
    return z, min(1.0, 2 * normal_sf(abs(z)))


def change_verdict(k1: float, n1: float, k2: float, n2: float, alpha: float = 0.05) -> str:
    """'better', 'worse' or 'no_change' for a compliance rate moving from k1/n1 to k2/n2.

    'better'/'worse' only when the two-proportion test gives p < alpha; 'no_data' when
    either run has no records in scope.
    """
    z, p = two_proportion_z(k1, n1, k2, n2)
    if z is None or p is None:
        return "no_data"
    if p >= alpha:
        return "no_change"
    return "better" if z > 0 else "worse"
