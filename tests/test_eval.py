"""pass@k: the unbiased estimator against brute-force enumeration of all k-subsets."""
import itertools
import math

import pytest

from eval import pass_at_k, powers_of_two


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_the_share_of_k_subsets_with_a_correct_sample(n):
    for c in range(n + 1):
        samples = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = sum(max(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_is_stable_for_thousands_of_samples():
    n, c, k = 5000, 37, 1000
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # Python integers: exact
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)
    assert pass_at_k(4000, 0, 100) == 0.0 and pass_at_k(4000, 4000, 100) == 1.0
    assert pass_at_k(16, 3, 1) == pytest.approx(3 / 16)


def test_pass_at_k_rejects_impossible_arguments():
    for n, c, k in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass_at_k"):
            pass_at_k(n, c, k)


def test_powers_of_two():
    assert powers_of_two(16) == [1, 2, 4, 8, 16]
    assert powers_of_two(24) == [1, 2, 4, 8, 16, 24]
