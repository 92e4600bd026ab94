"""Grader for exercise 1, pass_at_k: hand values, every k-subset enumerated, the edge cases, large
n."""

import itertools
import math
from fractions import Fraction

import pytest

from grading import call, expect_float

EXERCISE = "pass_at_k"


def by_enumeration(n, c, k):
    """The share of all C(n, k) draws of k samples (c of the n correct) that hold a correct one."""
    samples = [1] * c + [0] * (n - c)
    draws = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in draw) for draw in draws) / len(draws)


@pytest.mark.parametrize(
    "n, c, k, expected, hint",
    [
        (4, 1, 2, 0.5, "of the 6 pairs of 4 samples, 3 hold the one correct sample"),
        (5, 2, 2, 0.7, "1 - C(3, 2)/C(5, 2) = 1 - 3/10"),
        (10, 3, 4, 1 - 35 / 210, "1 - C(7, 4)/C(10, 4) = 1 - 35/210"),
    ],
)
def test_hand_values(impl, n, c, k, expected, hint):
    got = call(impl.pass_at_k, n, c, k)
    expect_float(
        got,
        expected,
        f"pass_at_k(n={n}, c={c}, k={k})",
        hint=hint + "; draws are without replacement",
    )


def test_equals_enumerating_every_draw(impl):
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                got = call(impl.pass_at_k, n, c, k)
                expect_float(
                    got,
                    by_enumeration(n, c, k),
                    f"pass_at_k(n={n}, c={c}, k={k})",
                    hint="the exact share of the C(n, k) draws of k samples that hold a correct "
                    "one",
                )


def test_k_equal_1_is_the_fraction_correct(impl):
    for n, c in [(16, 5), (32, 1), (7, 7)]:
        expect_float(call(impl.pass_at_k, n, c, 1), c / n, f"pass_at_k(n={n}, c={c}, k=1)")


@pytest.mark.parametrize(
    "n, c, k, expected, why",
    [
        (16, 0, 4, 0.0, "no correct sample: no draw can hold one"),
        (16, 16, 4, 1.0, "every sample correct"),
        (16, 14, 4, 1.0, "n - c = 2 < k = 4: every draw of 4 holds a correct sample"),
        (16, 1, 16, 1.0, "k = n draws every sample, so the one correct one too"),
    ],
)
def test_edge_cases(impl, n, c, k, expected, why):
    expect_float(
        call(impl.pass_at_k, n, c, k), expected, f"pass_at_k(n={n}, c={c}, k={k})", hint=why
    )


def test_large_n_stays_exact(impl):
    for n, c, k in [(2000, 1000, 100), (3000, 7, 1000), (1000, 1, 999)]:
        exact = float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))
        got = call(impl.pass_at_k, n, c, k)
        expect_float(
            got,
            exact,
            f"pass_at_k(n={n}, c={c}, k={k})",
            tol=1e-9,
            hint="C(3000, 1000) does not fit in a float: use the product of (1 - k/i), i = "
            "n-c+1..n",
        )
