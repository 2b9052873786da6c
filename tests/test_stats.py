"""Table-driven checks of toolkit.report.stats against hand-computed values."""

from __future__ import annotations

import math

import pytest

from toolkit.report import stats


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        # p=0.8: centre (0.8+0.19208)/1.38415, half 1.96*sqrt(0.016+0.009604)/1.38415
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),  # z²/(n+z²) = 3.8415/13.8415
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (95, 100, 0.8883, 0.9785),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson(k: int, n: int, lo: float, hi: float) -> None:
    got = stats.wilson(k, n)
    assert got[0] == pytest.approx(lo, abs=5e-4)
    assert got[1] == pytest.approx(hi, abs=5e-4)


def test_wilson_empty_and_bad() -> None:
    assert stats.wilson(0, 0) == (None, None)
    with pytest.raises(ValueError):
        stats.wilson(11, 10)


@pytest.mark.parametrize(
    ("p0", "n", "z", "lo", "hi"),
    [
        (0.9, 100, stats.Z95, 0.9 - 1.959964 * 0.03, 0.9 + 1.959964 * 0.03),  # sqrt(.09/100) = .03
        (0.9, 100, stats.Z998, 0.9 - 3.090232 * 0.03, 0.9 + 3.090232 * 0.03),
        (0.5, 400, stats.Z95, 0.5 - 1.959964 * 0.025, 0.5 + 1.959964 * 0.025),  # sqrt(.25/400) = .025
        (0.99, 10, stats.Z998, 0.99 - 3.090232 * math.sqrt(0.0099 / 10), 1.0),  # upper clipped at 1
        (1.0, 50, stats.Z95, 1.0, 1.0),
    ],
)
def test_funnel_limits(p0: float, n: int, z: float, lo: float, hi: float) -> None:
    got = stats.funnel_limits(p0, n, z)
    assert got[0] == pytest.approx(lo, abs=1e-6)
    assert got[1] == pytest.approx(hi, abs=1e-6)


def test_funnel_limits_empty() -> None:
    assert stats.funnel_limits(0.9, 0) == (None, None)


@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "z", "p"),
    [
        # pooled .525, se = sqrt(.525*.475*.02) = .070622, z = .15/.070622
        (45, 100, 60, 100, 2.1240, 0.0337),
        (60, 100, 45, 100, -2.1240, 0.0337),
        (90, 100, 90, 100, 0.0, 1.0),
        (10, 10, 10, 10, 0.0, 1.0),  # se 0
        # pooled 0.9, se = sqrt(.09*(1/1000+1/1000)) = .0134164, z = .02/.0134164
        (890, 1000, 910, 1000, 1.4907, 0.1360),
    ],
)
def test_two_proportion_z(k1: int, n1: int, k2: int, n2: int, z: float, p: float) -> None:
    gz, gp = stats.two_proportion_z(k1, n1, k2, n2)
    assert gz == pytest.approx(z, abs=1e-3)
    assert gp == pytest.approx(p, abs=1e-3)


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        ((45, 100, 60, 100), "better"),
        ((60, 100, 45, 100), "worse"),
        ((890, 1000, 910, 1000), "no_change"),
        ((1, 0, 1, 10), "no_data"),
    ],
)
def test_change_verdict(args: tuple, verdict: str) -> None:
    assert stats.change_verdict(*args) == verdict


def test_normal_sf() -> None:
    assert stats.normal_sf(0) == pytest.approx(0.5)
    assert 2 * stats.normal_sf(stats.Z95) == pytest.approx(0.05, abs=1e-9)
    assert 2 * stats.normal_sf(stats.Z998) == pytest.approx(0.002, abs=1e-9)
