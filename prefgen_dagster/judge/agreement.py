"""Agreement statistics between judges and between presentation orders.

Pure functions over plain mappings, so the pipeline can feed them whatever it reads from
storage and the maths can be tested on its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations


def _sign(d: float) -> int:
    return (d > 0) - (d < 0)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of paired scores; None when undefined (n < 2, or one side all tied)."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b needs paired scores, got {len(x)} and {len(y)}")
    n = len(x)
    score = ties_x = ties_y = 0
    for i, j in combinations(range(n), 2):
        dx, dy = _sign(x[j] - x[i]), _sign(y[j] - y[i])
        score += dx * dy  # +1 concordant, -1 discordant, 0 tied on either side
        ties_x += dx == 0
        ties_y += dy == 0
    pairs = n * (n - 1) // 2
    denominator = (pairs - ties_x) * (pairs - ties_y)
    if denominator == 0:
        return None
    return score / math.sqrt(denominator)


def mean_pairwise_tau(scores: Mapping[str, Mapping[tuple[str, str], float]]) -> float | None:
    """Mean tau-b over every judge pair and group, on the items both judges scored.

    `scores[judge][(group, item)]` is a rating. Ranks are only compared within a group (one
    instruction's completions); groups where tau-b is undefined are left out of the mean.
    """
    taus: list[float] = []
    for judge_a, judge_b in combinations(scores, 2):
        a, b = scores[judge_a], scores[judge_b]
        by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for key in a.keys() & b.keys():
            by_group[key[0]].append((a[key], b[key]))
        for pairs in by_group.values():
            tau = kendall_tau_b([p[0] for p in pairs], [p[1] for p in pairs])
            if tau is not None:
                taus.append(tau)
    return math.fsum(taus) / len(taus) if taus else None


def _ordered_pair_sq_diffs(values: Sequence[float]) -> float:
    """Sum of (v - v')**2 over all ordered pairs, computed as 2 * m * sum((v - mean)**2)."""
    m = len(values)
    mean = math.fsum(values) / m
    return 2 * m * math.fsum((v - mean) ** 2 for v in values)


def krippendorff_alpha_interval(units: Mapping[Hashable, Mapping[str, float]]) -> float | None:
    """Krippendorff's alpha with the interval metric; `units[unit][coder] = value`.

    alpha = 1 - D_o / D_e with n pairable values (those in units with at least two values):
    D_o = (1/n) * sum_u sum_{ordered pairs in u} (v - v')**2 / (m_u - 1) and
    D_e = (1/(n(n-1))) * sum_{ordered pairs of all pairable values} (v - v')**2.
    None when D_e is 0, i.e. fewer than two distinct pairable values.
    """
    pairable = [list(coders.values()) for coders in units.values() if len(coders) >= 2]
    values = [v for unit in pairable for v in unit]
    if len(set(values)) < 2:
        return None
    observed = math.fsum(_ordered_pair_sq_diffs(unit) / (len(unit) - 1) for unit in pairable)
    expected = _ordered_pair_sq_diffs(values)
    return 1 - (len(values) - 1) * observed / expected


def best_items(ratings: Mapping[str, float | None]) -> frozenset[str]:
    """The items sharing the top rating, ignoring None; empty when nothing was rated."""
    rated = {item: r for item, r in ratings.items() if r is not None}
    if not rated:
        return frozenset()
    top = max(rated.values())
    return frozenset(item for item, r in rated.items() if r == top)


def order_disagreement(
    judged: Mapping[tuple[str, ...], Mapping[str, Mapping[str, float | None]]],
) -> tuple[int, int]:
    """(keys whose orders pick different best items, keys compared).

    `judged[key][order_name][item] = rating`, one key per (instruction, judge, aspect). A key
    is compared only when it has at least two orders and every order rated something.
    """
    disagreeing = compared = 0
    for orders in judged.values():
        if len(orders) < 2:
            continue
        bests = {best_items(ratings) for ratings in orders.values()}
        if frozenset() in bests:
            continue
        compared += 1
        disagreeing += len(bests) > 1
    return disagreeing, compared
