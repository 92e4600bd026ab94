"""Intervals over seeds: Student's t quantile, the t-interval of a mean, paired and Welch intervals.

The study (experiments.py, study_report.py) and eval.py's CLI over several checkpoints report a
mean over seeds with mean ± t_{(1+level)/2, n-1} s / sqrt(n); two arms run with the same seeds are
compared by the paired interval of their differences, unpaired runs by Welch's interval (Welch
1947, its Welch-Satterthwaite degrees of freedom). The t quantile is computed here (bisection on
a Simpson-integrated density) so that the code needs no scipy.
"""

import math


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with df > 0 degrees of freedom (fractional too, as Welch's are).

    Bisection on the CDF, whose upper half is the t density integrated by Simpson's rule on [0, t];
    accurate to about 1e-6 for the quantiles intervals use (p in 0.9 .. 0.999, any df).
    """
    import numpy as np

    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t):
        x = np.linspace(0.0, t, 4001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
        simpson = density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum()
        return 0.5 + simpson * (x[1] - x[0]) / 3

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def seed_interval(values, level: float = 0.95) -> dict:
    """Mean over runs (seeds) and its t-interval: mean ± t_{(1+level)/2, n-1} s / sqrt(n), s the
    sample std.

    One value has no spread to measure: half, low and high are nan.
    """
    n = len(values)
    if n == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return {
            "mean": mean,
            "half": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "n": 1,
        }
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "half": half, "low": mean - half, "high": mean + half, "n": n}


def paired_interval(a, b, level: float = 0.95) -> dict:
    """Interval of the mean of the paired differences a[i] - b[i] (two arms, the same seeds):
    mean(d) ± t_{(1+level)/2, n-1} s_d / sqrt(n), s_d the sample std of the differences.

    Pairing removes what the two runs of a seed share (the prompt stream, the sampling seeds). Fewer
    than 2 pairs: low, high and half are nan.
    """
    if len(a) != len(b) or not a:
        raise ValueError(
            f"paired_interval needs two equal, non-empty lists, got {len(a)} and {len(b)} values"
        )
    interval = seed_interval([x - y for x, y in zip(a, b)], level)
    return {
        "diff": interval["mean"],
        "low": interval["low"],
        "high": interval["high"],
        "half": interval["half"],
        "n": len(a),
    }


def welch_interval(a, b, level: float = 0.95) -> dict:
    """Interval of mean(a) - mean(b) for two sets of runs with unequal variances (Welch's df).

    Fewer than 2 values on a side: low and high are nan. No spread on either side: the interval is
    the difference itself.
    """
    if not a or not b:
        raise ValueError("welch_interval needs at least one value on each side")
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    diff, nan = mean_a - mean_b, float("nan")
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": nan, "high": nan, "df": nan}
    # squared standard errors of the means
    var_a = sum((v - mean_a) ** 2 for v in a) / (len(a) - 1) / len(a)
    var_b = sum((v - mean_b) ** 2 for v in b) / (len(b) - 1) / len(b)
    if var_a + var_b == 0:
        return {"diff": diff, "low": diff, "high": diff, "df": float("inf")}
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = t_quantile((1 + level) / 2, df) * math.sqrt(var_a + var_b)
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": df}
