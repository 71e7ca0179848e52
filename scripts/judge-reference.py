#!/usr/bin/env python3
"""Reference values for crates/prism-analysis/tests/judges.rs, computed by SciPy.

    pip install scipy && scripts/judge-reference.py

Prints, for each sample set the tests use, U of x and the two-sided p-value of
scipy.stats.mannwhitneyu (asymptotic, tie and continuity corrections), and the
medians; for the comparisons x is the contender and y the incumbent.
"""
from statistics import median

from scipy.stats import mannwhitneyu

SAMPLES = {
    # Mann-Whitney U alone
    "docs": ([19, 22, 16, 29, 24], [20, 11, 17, 12]),
    "ties": ([1, 2, 2, 3, 4, 4, 4, 5], [2, 3, 3, 5, 6, 6, 7]),
    "constants": ([2, 2, 2, 2], [5, 5, 5]),
    "same_constant": ([3, 3, 3, 3, 3], [3, 3, 3]),
    "identical": ([0.1, 0.4, 0.2, 0.9, 0.3], [0.1, 0.4, 0.2, 0.9, 0.3]),
    "far_apart": ([float(i) for i in range(101, 121)], [float(i) for i in range(1, 21)]),
    "unequal_sizes": ([5.1, 4.8, 6.0], [4.0, 4.2, 3.9, 5.0, 4.4, 4.1, 4.6, 3.8, 4.3, 4.9, 4.5, 4.7]),
    # comparisons: contender, incumbent
    "error_rate_up": (
        [0.21, 0.19, 0.22, 0.20, 0.23, 0.21, 0.18, 0.24],
        [0.010, 0.012, 0.009, 0.011, 0.010, 0.013, 0.011, 0.010],
    ),
    "throughput_down": (
        [0.010, 0.012, 0.009, 0.011, 0.010, 0.013, 0.011, 0.010],
        [0.21, 0.19, 0.22, 0.20, 0.23, 0.21, 0.18, 0.24],
    ),
    "slightly_slower": (
        [101.0, 101.2, 101.1, 101.3, 101.0, 101.2, 101.1, 101.4],
        [100.0, 100.2, 100.1, 100.3, 100.0, 100.2, 100.1, 100.4],
    ),
    "noisy": ([2, 11, 4, 12, 1], [1, 10, 2, 9, 3]),
    "three_each": ([10, 11, 12], [1, 2, 3]),
    "from_zero": ([0.2, 0.3, 0.1, 0.25, 0.2], [0, 0, 0, 0, 0]),
}

for name, (x, y) in SAMPLES.items():
    r = mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    print(f"{name}: u1={float(r.statistic)!r} p={float(r.pvalue)!r} "
          f"median_x={float(median(x))!r} median_y={float(median(y))!r}")
