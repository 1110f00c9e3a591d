"""Which pairs of a batch people review: a stratified sample, the same on every run.

A stratum is a pair's kind (which origins face each other, and whether a rule dropped the
pair) and its margin bucket, so a review sees close and clear calls, rewrites and pool
answers in proportion, and at least one pair of each stratum where the size allows. Within a
stratum, pairs are taken in the order of a hash of the seed and the pair id: growing the
sample, or the batch, keeps the pairs drawn before wherever the stratum's share allows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from prefgen_dagster.ids import stable_hash

# Upper edges of the margin buckets (rating points); a pair without a margin (a rule made it
# and no judge scored both texts) has its own bucket.
MARGIN_EDGES = (1.0, 2.0)


def margin_bucket(margin: float | None) -> str:
    if margin is None:
        return "unscored"
    low = 0.0
    for edge in MARGIN_EDGES:
        if abs(margin) < edge:
            return f"{low:g}-{edge:g}"
        low = edge
    return f">={low:g}"


def stratum(pair: Mapping[str, Any]) -> str:
    """A pair's stratum: `<chosen origin>/<rejected origin>[ dropped] margin <bucket>`."""
    kind = f"{pair['chosen_origin']}/{pair['rejected_origin']}"
    if pair.get("dropped_because"):
        kind += " dropped"
    return f"{kind} margin {margin_bucket(pair['margin'])}"


def sample_size(size: float, available: int) -> int:
    """`review.sample` as a number of pairs: a count, or a share of the batch's pairs."""
    wanted = math.ceil(size * available) if size < 1 else int(size)
    return min(wanted, available)


def draw(
    pairs: Sequence[Mapping[str, Any]], size: float, seed: int, include_dropped: bool
) -> list[tuple[Mapping[str, Any], str]]:
    """(pair, stratum) for each pair to review, in a stable order. Pairs a rule dropped come
    only with `include_dropped`, and then all of them, on top of the sample of kept pairs."""
    kept = [pair for pair in pairs if not pair.get("dropped_because")]
    picked = _stratified(kept, sample_size(size, len(kept)), seed)
    if include_dropped:
        picked += sorted(
            (pair for pair in pairs if pair.get("dropped_because")),
            key=lambda pair: _order(seed, pair),
        )
    return [(pair, stratum(pair)) for pair in picked]


def _stratified(pairs: Sequence[Mapping[str, Any]], n: int, seed: int) -> list[Mapping[str, Any]]:
    """n pairs over the strata in proportion to their sizes (largest remainders), then one
    for each stratum left without, taken from the largest quota, while n allows."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for pair in sorted(pairs, key=lambda pair: _order(seed, pair)):
        groups[stratum(pair)].append(pair)
    names = sorted(groups)
    share = {name: n * len(groups[name]) / len(pairs) for name in names} if pairs else {}
    quota = {name: math.floor(share[name]) for name in names}
    by_remainder = sorted(names, key=lambda name: (-(share[name] % 1), name))
    for name in by_remainder[: n - sum(quota.values())]:
        quota[name] += 1
    for name in sorted(names, key=lambda name: (len(groups[name]), name)):
        donor = max(names, key=lambda other: (quota[other], other))
        if quota[name] == 0 and quota[donor] > 1:
            quota[name], quota[donor] = 1, quota[donor] - 1
    picked = [pair for name in names for pair in groups[name][: quota[name]]]
    return sorted(picked, key=lambda pair: _order(seed, pair))


def _order(seed: int, pair: Mapping[str, Any]) -> str:
    return stable_hash([seed, pair["pair_id"]])


def chosen_shown(seed: int, pair_id: str) -> str:
    """The side the task shows the chosen text on, left or right, by a hash (so about half
    each, and the same side if the task is ever made again)."""
    return "left" if int(stable_hash([seed, "side", pair_id]), 16) % 2 == 0 else "right"
