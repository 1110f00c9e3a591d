"""Canaries: each corruption, the sample, and the choice of the intact side."""

from __future__ import annotations

from typing import Any

import pytest

from prefgen_dagster.judge.canaries import (
    Canary,
    build_canaries,
    repetition_loop,
    sample_ids,
    shuffled,
    truncated,
)
from prefgen_dagster.text.quality import can_be_chosen, repetition

ANSWER = (
    "Tides come from the Moon's pull on the oceans. The Sun adds a smaller pull. "
    "Two bulges of water follow the Moon around the Earth. Most coasts see two high tides "
    "a day."
)


# --- the measures a canary's intact side must pass ---------------------------------------


def test_repetition_tells_prose_from_loops() -> None:
    assert repetition(ANSWER) == 0.0
    assert repetition("La la la la la la la la la la") > 0.8
    assert repetition(f"{ANSWER} {ANSWER}") == pytest.approx(0.5, abs=0.05)
    assert repetition("") == repetition("too short") == 0.0


@pytest.mark.parametrize(
    ("text", "finish", "rep", "expected"),
    [
        (ANSWER, "stop", 0.0, True),
        (ANSWER, None, None, True),  # a server that reports no finish reason
        (ANSWER, "length", 0.0, False),  # cut at max_tokens
        ("   ", "stop", 0.0, False),  # empty
        ("la la la", "stop", 0.9, False),  # degenerate
    ],
)
def test_can_be_chosen(text: str, finish: str | None, rep: float | None, expected: bool) -> None:
    assert can_be_chosen(text, finish, rep, max_repetition=0.5) is expected


# --- each corruption -----------------------------------------------------------------------


def test_truncated_keeps_the_first_third_of_the_words() -> None:
    cut = truncated(ANSWER)
    assert ANSWER.startswith(cut)
    assert len(cut.split()) == len(ANSWER.split()) // 3
    assert truncated("one two") == "one"  # always at least one word shorter


def test_shuffled_reorders_sentences_and_never_returns_the_original() -> None:
    mixed = shuffled(ANSWER, seed=1)
    assert mixed != ANSWER
    assert sorted(mixed.split(". ")) != mixed.split(". ")  # a real reordering...
    assert sorted(mixed.replace(".", "").split()) == sorted(ANSWER.replace(".", "").split())
    assert shuffled(ANSWER, seed=1) == mixed  # ...fixed by the seed
    # Fewer than three sentences: the words are shuffled instead.
    short = "Paris is the capital of France and its largest city"
    words = shuffled(short, seed=3)
    assert words != short and sorted(words.split()) == sorted(short.split())
    assert shuffled("same same same", seed=0) == "same same same"  # nothing to reorder


def test_repetition_loop_repeats_the_first_sentence_to_the_same_length() -> None:
    loop = repetition_loop(ANSWER)
    first = "Tides come from the Moon's pull on the oceans."
    assert loop.startswith(f"{first} {first}")
    assert len(loop) >= len(ANSWER)
    assert repetition(loop) > 0.5


# --- building a batch's canaries -----------------------------------------------------------


def completion(cid: str, iid: str, model: str, text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "completion_id": cid,
        "instruction_id": iid,
        "model": model,
        "text": text,
        "finish_reason": finish,
        "repetition": repetition(text),
    }


OTHER = "Use a dictionary: keys map to values, and lookups take constant time on average."
BATCH = [
    completion("a1", "i1", "real", ANSWER),
    completion("a2", "i1", "real", ANSWER + " Extra words cut here", finish="length"),
    completion("a3", "i1", "tiny", "gibberish tokens floating here and there"),
    completion("b1", "i2", "real", OTHER),
    completion("c1", "i3", "real", "Too short."),  # not enough words to be an intact side
]
KINDS = ["truncated", "shuffled", "other_answer", "repetition", "weaker_model"]


def build(**overrides: Any) -> list[Canary]:
    settings: dict[str, Any] = {
        "kinds": KINDS,
        "fraction": 1.0,
        "min_instructions": 0,
        "seed": 0,
        "source_models": [],
        "ranking": ["real", "tiny"],
        "max_repetition": 0.5,
        **overrides,
    }
    return build_canaries(BATCH, **settings)


def test_every_kind_from_a_finished_source() -> None:
    canaries = build()
    by_key = {(c.instruction_id, c.kind): c for c in canaries}
    # i1's intact side is a1 (a2 was cut at max_tokens); i3 has no usable source.
    assert {c.source_completion_id for c in canaries if c.instruction_id == "i1"} == {"a1"}
    assert "i3" not in {c.instruction_id for c in canaries}
    assert set(by_key) == {(iid, kind) for iid in ("i1", "i2") for kind in KINDS} - {
        ("i2", "weaker_model")  # no weaker model answered i2
    }
    assert by_key[("i1", "truncated")].corrupted_text == truncated(ANSWER)
    assert by_key[("i1", "repetition")].corrupted_text == repetition_loop(ANSWER)
    assert by_key[("i1", "other_answer")].corrupted_text == OTHER
    assert by_key[("i1", "other_answer")].corrupted_from_id == "b1"
    weaker = by_key[("i1", "weaker_model")]
    assert (weaker.corrupted_from_id, weaker.source_model) == ("a3", "real")
    for canary in canaries:
        assert canary.intact_text != canary.corrupted_text
        intact = (canary.intact_id, canary.intact_text)
        corrupted = (canary.corrupted_id, canary.corrupted_text)
        expected = [corrupted, intact] if canary.corrupted_first else [intact, corrupted]
        assert canary.items() == expected
    # The corrupted side comes first on half of each kind's canaries (rounded down), so a
    # judge that rates by position is right on half of them.
    for kind in KINDS:
        of_kind = [c for c in canaries if c.kind == kind]
        assert sum(c.corrupted_first for c in of_kind) == len(of_kind) // 2


def test_canaries_are_fixed_by_the_seed() -> None:
    assert build() == build()
    assert {c.canary_id for c in build()} != {c.canary_id for c in build(seed=1)}


def test_source_models_limit_the_intact_side() -> None:
    # The tiny model's only answer has fewer than 8 words: too short to cut or shuffle.
    assert build(source_models=["tiny"]) == []
    assert {c.source_model for c in build(source_models=["real"])} == {"real"}


def test_without_a_ranking_there_is_no_weaker_model_canary() -> None:
    assert "weaker_model" not in {c.kind for c in build(ranking=[])}


def test_sample_takes_a_fraction_with_a_floor_and_is_stable() -> None:
    ids = [f"i{n}" for n in range(40)]
    assert sample_ids(ids, 0.25, 0, 0, "s") == sample_ids(list(reversed(ids)), 0.25, 0, 0, "s")
    assert len(sample_ids(ids, 0.25, 0, 0, "s")) == 10
    assert len(sample_ids(ids, 0.1, 20, 0, "s")) == 20  # the floor
    assert sample_ids(ids[:5], 0.1, 20, 0, "s") == set(ids[:5])  # all, when fewer
    assert sample_ids(ids, 0.0, 20, 0, "s") == set()  # off
    # Growing the batch keeps most of the sample.
    small, large = (
        sample_ids(ids, 0.25, 0, 0, "s"),
        sample_ids(ids + ["i40", "i41"], 0.25, 0, 0, "s"),
    )
    assert len(small & large) >= 9
