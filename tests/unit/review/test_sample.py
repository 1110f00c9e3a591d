"""The review sample: its size, its strata, and that it is the same on every run."""

from __future__ import annotations

from collections import Counter

from prefgen_dagster.review.sample import chosen_shown, draw, margin_bucket, sample_size


def _pairs(n: int, **fields) -> list[dict]:
    base = {
        "chosen_origin": "pooled",
        "rejected_origin": "pooled",
        "margin": 1.5,
        "dropped_because": None,
    }
    return [{**base, **fields, "pair_id": f"{fields.get('tag', 'p')}{i}"} for i in range(n)]


def test_size_is_a_count_or_a_share() -> None:
    assert sample_size(50, 200) == 50
    assert sample_size(50, 20) == 20
    assert sample_size(0.05, 200) == 10
    assert sample_size(0.05, 3) == 1


def test_margin_buckets() -> None:
    assert [margin_bucket(m) for m in (0.5, -0.5, 1.0, 1.99, 2.0, 4, None)] == [
        "0-1",
        "0-1",
        "1-2",
        "1-2",
        ">=2",
        ">=2",
        "unscored",
    ]


def test_every_stratum_is_represented_and_shares_follow_sizes() -> None:
    pairs = (
        _pairs(60, tag="a", margin=0.5)
        + _pairs(30, tag="b", margin=3.0)
        + _pairs(10, tag="c", chosen_origin="evolved", margin=1.2)
    )
    picked = draw(pairs, 20, seed=1, include_dropped=False)
    counts = Counter(stratum for _, stratum in picked)
    assert sum(counts.values()) == 20
    assert counts == {
        "pooled/pooled margin 0-1": 12,
        "pooled/pooled margin >=2": 6,
        "evolved/pooled margin 1-2": 2,
    }
    # A small stratum still gets one pair when the sample is small.
    small = draw(pairs, 3, seed=1, include_dropped=False)
    assert len({stratum for _, stratum in small}) == 3


def test_the_same_seed_draws_the_same_pairs_and_another_seed_others() -> None:
    pairs = _pairs(100)
    ids = lambda seed: [p["pair_id"] for p, _ in draw(pairs, 10, seed, False)]  # noqa: E731
    assert ids(3) == ids(3)
    assert ids(3) != ids(4)
    # A larger sample keeps the pairs of the smaller one (one stratum: a prefix of one order).
    assert set(ids(3)) <= {p["pair_id"] for p, _ in draw(pairs, 20, 3, False)}


def test_dropped_pairs_come_only_when_asked_and_then_all() -> None:
    pairs = _pairs(10) + _pairs(4, tag="d", dropped_because="low_margin: 0.5 < 1")
    without = draw(pairs, 5, seed=0, include_dropped=False)
    assert all(not p["dropped_because"] for p, _ in without)
    with_dropped = draw(pairs, 5, seed=0, include_dropped=True)
    assert len(with_dropped) == 9
    assert sum("dropped" in stratum for _, stratum in with_dropped) == 4


def test_the_chosen_text_is_shown_left_about_half_the_time() -> None:
    sides = Counter(chosen_shown(0, f"pair{i}") for i in range(400))
    assert 160 < sides["left"] < 240
    assert chosen_shown(0, "pair1") == chosen_shown(0, "pair1")
