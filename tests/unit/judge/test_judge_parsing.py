"""Judge output parsing: a well-formed answer or a named failure with all-None ratings."""

from __future__ import annotations

import json

import pytest

from prefgen_dagster.judge.parse import JudgeVerdict, parse_listwise_output


def judge_json(*entries: tuple[object, object]) -> str:
    return json.dumps({"ratings": [{"rating": r, "rationale": why} for r, why in entries]})


def text_blocks(*entries: tuple[object, str]) -> str:
    return "\n\n".join(f"Rating: {r}\nRationale: {why}" for r, why in entries)


def assert_failed(verdict: JudgeVerdict, count: int, status: str) -> None:
    assert verdict.status == status
    assert not verdict.ok
    assert verdict.ratings == [None] * count
    assert verdict.rationales == [None] * count


def test_valid_json() -> None:
    verdict = parse_listwise_output(judge_json((4, "Correct."), (2, "Off topic.")), 2)
    assert verdict.ok and verdict.status == "ok"
    assert verdict.ratings == [4, 2]
    assert verdict.rationales == ["Correct.", "Off topic."]


def test_valid_json_with_surrounding_whitespace() -> None:
    verdict = parse_listwise_output("\n  " + judge_json((5, "Great.")) + "\n", 1)
    assert verdict.ratings == [5]


@pytest.mark.parametrize("count", [1, 3])
def test_wrong_count(count: int) -> None:
    assert_failed(
        parse_listwise_output(judge_json((4, "a"), (3, "b")), count), count, "wrong_count"
    )


@pytest.mark.parametrize("rating", [0, 6, -1])
def test_rating_out_of_range(rating: int) -> None:
    raw = judge_json((3, "fine"), (rating, "bad"))
    assert_failed(parse_listwise_output(raw, 2), 2, "out_of_range")


@pytest.mark.parametrize("rating", ["4", 4.5, 4.0, True, None])
def test_rating_not_an_integer(rating: object) -> None:
    raw = judge_json((3, "fine"), (rating, "odd type"))
    assert_failed(parse_listwise_output(raw, 2), 2, "not_integer")


def test_missing_rationale_fails() -> None:
    raw = json.dumps({"ratings": [{"rating": 4}]})
    assert_failed(parse_listwise_output(raw, 1), 1, "invalid_json")


@pytest.mark.parametrize(
    "raw",
    [
        '{"ratings": [{"rating": 4',
        '{"ratings": [{"rating": 4, "rationale": "ok"},',
        '{"ratings": [{"rating": 4, "rationale": "ok"}]',
    ],
)
def test_truncated_json_after_a_token(raw: str) -> None:
    assert_failed(parse_listwise_output(raw, 2), 2, "truncated_json")


def test_truncated_json_inside_a_rationale() -> None:
    raw = '{"ratings": [{"rating": 4, "rationale": "The answer is correct but it ne'
    assert_failed(parse_listwise_output(raw, 1), 1, "truncated_json")


def test_malformed_json_in_the_middle_is_invalid() -> None:
    raw = '{"ratings": [{"rating": 4, "rationale": "ok"} {"rating": 2}]}'
    assert_failed(parse_listwise_output(raw, 2), 2, "invalid_json")


@pytest.mark.parametrize("raw", ['{"ratings": "4, 2"}', '{"ratings": [4, 2]}', '{"score": []}'])
def test_json_of_the_wrong_shape(raw: str) -> None:
    assert_failed(parse_listwise_output(raw, 2), 2, "invalid_json")


@pytest.mark.parametrize("raw", [None, "", "   \n\t "])
def test_empty_output(raw: str | None) -> None:
    assert_failed(parse_listwise_output(raw, 3), 3, "empty")


def test_text_fallback_valid_blocks() -> None:
    raw = text_blocks((5, "Complete and clear."), (1, "Wrong.\nAlso rude."), (3, "Partly."))
    verdict = parse_listwise_output(raw, 3)
    assert verdict.status == "ok"
    assert verdict.ratings == [5, 1, 3]
    assert verdict.rationales == ["Complete and clear.", "Wrong.\nAlso rude.", "Partly."]


def test_text_with_a_preamble_is_unparseable() -> None:
    raw = "Here are my ratings:\n" + text_blocks((4, "Good."), (2, "Weak."))
    assert_failed(parse_listwise_output(raw, 2), 2, "unparseable")


@pytest.mark.parametrize("blocks", [1, 3])
def test_text_with_wrong_block_count(blocks: int) -> None:
    raw = text_blocks(*[(4, f"Reason {i}.") for i in range(blocks)])
    assert_failed(parse_listwise_output(raw, 2), 2, "wrong_count")


def test_text_with_words_instead_of_numbers() -> None:
    raw = text_blocks(("four", "Good."), (2, "Weak."))
    assert_failed(parse_listwise_output(raw, 2), 2, "not_integer")


def test_text_rating_out_of_range() -> None:
    raw = text_blocks((4, "Good."), (9, "Too generous."))
    assert_failed(parse_listwise_output(raw, 2), 2, "out_of_range")


def test_text_with_extra_words_after_the_rating_is_not_an_integer() -> None:
    raw = "Rating: 4 stars\nRationale: Good.\n\nRating: 2\nRationale: Weak."
    assert_failed(parse_listwise_output(raw, 2), 2, "not_integer")


def test_na_only_where_the_aspect_allows_it() -> None:
    raw = json.dumps(
        {"ratings": [{"rating": "N/A", "rationale": "Fiction."}, {"rating": 3, "rationale": "Ok."}]}
    )
    allowed = parse_listwise_output(raw, 2, allow_na=True)
    assert allowed.ok and allowed.ratings == [None, 3]
    assert allowed.is_na(0) and not allowed.is_na(1)
    assert_failed(parse_listwise_output(raw, 2), 2, "na_not_allowed")
    text = "Rating: N/A\nRationale: Fiction.\nRating: 5\nRationale: Fine."
    assert parse_listwise_output(text, 2, allow_na=True).ratings == [None, 5]


def test_score_only_mode() -> None:
    assert parse_listwise_output(
        '{"ratings": [{"rating": 2}, {"rating": 5}]}', 2, with_rationale=False
    ).ratings == [2, 5]
    assert parse_listwise_output("Rating: 2\nRating: 5", 2, with_rationale=False).ratings == [2, 5]
    assert_failed(
        parse_listwise_output("Rating: 2\nRating: 5", 3, with_rationale=False), 3, "wrong_count"
    )
    assert_failed(
        parse_listwise_output("Sure!\nRating: 2", 1, with_rationale=False), 1, "unparseable"
    )
