"""Pointwise and pairwise judging (prompts, schemas, parsers, requests), the position probe,
canary groups, and the judge's answer budget."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import get_args

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.judge import JUDGE_ASPECTS, MODE_ORDERS, JudgeConfig, JudgeModeName
from prefgen_dagster.judge import prompt as ultrafeedback
from prefgen_dagster.judge.canaries import Canary
from prefgen_dagster.judge.modes import MODES
from prefgen_dagster.judge.parse import (
    parse_pairwise_output,
    parse_pointwise_output,
)
from prefgen_dagster.judge.plan import judge_groups, plan_judging, rating_rows

MakeConfig = Callable[..., PipelineConfig]
INSTRUCTIONS = {
    "i1": {"instruction_id": "i1", "instruction": "Explain tides."},
    "i2": {"instruction_id": "i2", "instruction": "Write a haiku."},
}
CANDIDATES = [
    {"completion_id": "c1", "instruction_id": "i1", "text": "first"},
    {"completion_id": "c2", "instruction_id": "i1", "text": "second"},
    {"completion_id": "c3", "instruction_id": "i1", "text": "third"},
    {"completion_id": "d1", "instruction_id": "i2", "text": "one haiku"},
]
CANARY = Canary("k1", "i1", "truncated", "c1", "m", "first", "fir", None, corrupted_first=True)


def judged(make_config: MakeConfig, **judge: object) -> PipelineConfig:
    return make_config(judge={"model": "judge-m", "rationale_max_chars": 50, **judge})


# --- prompts and schemas -------------------------------------------------------------------


def test_pointwise_prompt_puts_the_shared_part_first() -> None:
    one = ultrafeedback.pointwise_messages("Explain tides.", "Because of the Moon.")
    two = ultrafeedback.pointwise_messages("Explain tides.", "Gravity, mostly.")
    assert one[0] == two[0]  # the system prompt
    text_one, text_two = one[1]["content"], two[1]["content"]
    shared = text_one[: text_one.index("# Response")]
    assert text_two.startswith(shared)  # rubric and instruction: a prefix the engine caches
    assert "Explain tides." in shared and "Because of the Moon." not in shared
    assert '{"rating": <1-5>, "rationale": "<one or two sentences>"}' in text_one


def test_pairwise_prompt_names_a_and_b_and_offers_no_na() -> None:
    [_, user] = ultrafeedback.pairwise_messages("Q?", "alpha", "beta", aspect="honesty")
    text = user["content"]
    assert text.index("# Response A\nalpha") < text.index("# Response B\nbeta")
    assert '{"better": "A" | "B" | "tie", "rationale":' in text
    assert "N/A" not in text  # a verdict, not a rating


def test_schemas_bound_every_value() -> None:
    point = ultrafeedback.pointwise_schema(50, "truthfulness")
    assert point["required"] == ["rating", "rationale"]
    assert point["properties"]["rationale"]["maxLength"] == 50
    assert {"type": "string", "enum": ["N/A"]} in point["properties"]["rating"]["anyOf"]
    pair = ultrafeedback.pairwise_schema(50, with_rationale=False)
    assert pair["properties"] == {"better": {"type": "string", "enum": ["A", "B", "tie"]}}
    assert pair["additionalProperties"] is False


def test_answer_budget_covers_a_rationale_written_one_token_per_character() -> None:
    # A rationale of 200 characters can take 200 tokens: 8 of them need more than 1,024.
    assert MODES["listwise"].token_bound(8, 200) > 1024
    assert MODES["listwise"].token_bound(8, 200) == 8 + 8 * (16 + 200)
    assert MODES["pointwise"].token_bound(8, 200) == 8 + 16 + 200
    assert MODES["pairwise"].token_bound(2, 200) == 8 + 16 + 200
    assert MODES["listwise"].token_bound(3, 200, with_rationale=False) == 8 + 3 * 16


@pytest.mark.parametrize("mode", ["listwise", "pointwise", "pairwise"])
@pytest.mark.parametrize("with_rationale", [True, False])
@pytest.mark.parametrize("aspect", ["overall", "honesty"])
def test_the_answer_skeleton_is_a_valid_answer_at_its_widest(
    mode: str, with_rationale: bool, aspect: str
) -> None:
    # What the estimate tokenizes to size an answer: a real answer, the longest values in it.
    count = 3 if mode == "listwise" else 2 if mode == "pairwise" else 1
    allow_na = ultrafeedback.ASPECTS[aspect].allows_na
    text = MODES[mode].skeleton(count, aspect, with_rationale)
    verdict = MODES[mode].parse(text, count, allow_na, with_rationale)
    assert verdict.status == "ok", text
    assert ("rationale" in text) == with_rationale
    assert ('"N/A"' in text) == (allow_na and mode != "pairwise")


# --- parsers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "ratings"),
    [
        ('{"rating": 4, "rationale": "fine"}', "ok", [4]),
        ("Rating: 2\nRationale: weak", "ok", [2]),
        ('{"rating": 6, "rationale": "x"}', "out_of_range", [None]),
        ('{"rating": "N/A", "rationale": "x"}', "na_not_allowed", [None]),
        ('{"rating": 4, "rationale": "cut', "truncated_json", [None]),
        ('{"ratings": [{"rating": 4}]}', "not_integer", [None]),  # a listwise answer
        ('["rating", 4]', "unparseable", [None]),
        ("", "empty", [None]),
        ("I think 4", "unparseable", [None]),
    ],
)
def test_pointwise_parser(raw: str, status: str, ratings: list[int | None]) -> None:
    verdict = parse_pointwise_output(raw)
    assert (verdict.status, verdict.ratings) == (status, ratings)


def test_pointwise_na_where_the_aspect_allows_it() -> None:
    verdict = parse_pointwise_output('{"rating": "N/A", "rationale": "fiction"}', allow_na=True)
    assert verdict.ok and verdict.ratings == [None] and verdict.is_na(0)


@pytest.mark.parametrize(
    ("raw", "status", "ratings"),
    [
        ('{"better": "A", "rationale": "clearer"}', "ok", [5, 1]),
        ('{"better": "B", "rationale": "clearer"}', "ok", [1, 5]),
        ('{"better": "tie", "rationale": "same"}', "ok", [3, 3]),
        ("Better: B\nRationale: it answers", "ok", [1, 5]),
        ('{"better": "C", "rationale": "?"}', "unknown_verdict", [None, None]),
        ('{"better": "A"}', "invalid_json", [None, None]),  # the rationale is missing
        ('{"better": "A", "ration', "truncated_json", [None, None]),
        ("A is better", "unparseable", [None, None]),
        ("", "empty", [None, None]),
    ],
)
def test_pairwise_parser(raw: str, status: str, ratings: list[int | None]) -> None:
    verdict = parse_pairwise_output(raw)
    assert (verdict.status, verdict.ratings) == (status, ratings)


def test_each_mode_parses_its_own_answers() -> None:
    listwise = json.dumps({"ratings": [{"rating": 3, "rationale": "ok"}]})
    assert MODES["listwise"].parse(listwise, 1).ratings == [3]
    assert MODES["pointwise"].parse('{"rating": 3, "rationale": "ok"}', 1).ratings == [3]
    assert MODES["pairwise"].parse('{"better": "B"}', 2, with_rationale=False).ratings == [1, 5]


# --- requests by mode ----------------------------------------------------------------------


def test_pointwise_asks_once_per_text_and_shares_the_intact_side(make_config: MakeConfig) -> None:
    config = judged(make_config, mode="pointwise")
    groups = judge_groups(CANDIDATES, [CANARY], config)
    assert [g.purpose for g in groups] == ["label", "label", "canary"]  # no probe: no order
    plans = plan_judging(groups, INSTRUCTIONS, config, attempt=0)
    assert Counter(p.row.purpose for p in plans) == {"label": 4, "canary": 2}
    assert all(len(p.row.completion_ids) == 1 for p in plans)
    # The canary's intact text is c1's text for the same instruction: the same request.
    by_text = {p.request.messages[1]["content"]: p.request.call_id for p in plans}
    assert len({p.request.call_id for p in plans}) == 5
    assert len(by_text) == 5
    first = [p for p in plans if p.row.completion_ids in (["c1"], [CANARY.intact_id])]
    assert len({p.request.call_id for p in first}) == 1
    assert first[0].request.json_schema == ultrafeedback.pointwise_schema(50, "overall")


def test_pairwise_asks_every_two_texts_in_both_orders(make_config: MakeConfig) -> None:
    config = judged(make_config, mode="pairwise")
    plans = plan_judging(judge_groups(CANDIDATES, [CANARY], config), INSTRUCTIONS, config, 0)
    labels = [p for p in plans if p.row.purpose == "label"]
    assert len(labels) == 3 * 2  # i1: 3 texts -> 3 pairs x 2 orders; i2: 1 text -> none
    shown = Counter(tuple(p.row.completion_ids) for p in labels)
    assert set(shown) == {
        ("c1", "c2"), ("c2", "c1"), ("c1", "c3"), ("c3", "c1"), ("c2", "c3"), ("c3", "c2"),
    }  # fmt: skip
    canaries = [p for p in plans if p.row.purpose == "canary"]
    assert sorted(p.row.order_name for p in canaries) == ["original", "reversed"]
    # A verdict for (c3, c1) lands on the right completions.
    plan = next(p for p in labels if p.row.completion_ids == ["c3", "c1"])
    raw = '{"better": "B", "rationale": "c1 is better"}'
    rows = rating_rows(plan, parse_pairwise_output(raw), raw, config, "b")
    assert [(r["completion_id"], r["rating"], r["position"], r["shown"]) for r in rows] == [
        ("c3", 1, 1, 2),
        ("c1", 5, 2, 2),
    ]
    assert {(r["mode"], r["order_name"]) for r in rows} == {("pairwise", "reversed")}


def test_listwise_probe_reverses_a_sample_unless_reversed_is_an_order(
    make_config: MakeConfig,
) -> None:
    config = judged(make_config, position_probe=0.5)
    groups = judge_groups(CANDIDATES, [], config)
    probes = [g for g in groups if g.purpose == "position_probe"]
    # Half of two instructions is one; i2 has a single text, so only i1 can be probed.
    assert [(g.instruction_id, g.orders) for g in probes] in ([], [("i1", ("reversed",))])
    config = judged(make_config, position_probe=1.0)
    [probe] = [g for g in judge_groups(CANDIDATES, [], config) if g.purpose == "position_probe"]
    plans = plan_judging([probe], INSTRUCTIONS, config, 0)
    assert [p.row.completion_ids for p in plans] == [["c3", "c2", "c1"]]
    both = judged(make_config, position_probe=1.0, orders=["original", "reversed"])
    assert {g.purpose for g in judge_groups(CANDIDATES, [], both)} == {"label"}
    assert not judged(make_config, mode="pairwise").judge.probes_position()


def test_canary_groups_follow_the_listwise_orders(make_config: MakeConfig) -> None:
    config = judged(make_config, orders=["original", "reversed"])
    [group] = [g for g in judge_groups([], [CANARY], config) if g.purpose == "canary"]
    assert group.items == tuple(CANARY.items())  # corrupted first, as drawn
    plans = plan_judging([group], INSTRUCTIONS, config, 0)
    assert [p.row.completion_ids for p in plans] == [
        [CANARY.corrupted_id, CANARY.intact_id],
        [CANARY.intact_id, CANARY.corrupted_id],
    ]
    assert all(p.request.sampling.max_tokens == MODES["listwise"].token_bound(2, 50) for p in plans)


def test_orders_are_listwise_only(make_config: MakeConfig) -> None:
    with pytest.raises(ValueError, match="judge.orders applies to listwise judging only"):
        judged(make_config, mode="pairwise", orders=["original", "reversed"])


def test_the_modes_are_the_configs_and_the_rubric_is_the_configs_aspects() -> None:
    # A judge mode is one object, named as the config names it; an aspect the config accepts
    # is one the rubric has, and back.
    assert set(MODES) == set(get_args(JudgeModeName))
    assert all(mode.name == name for name, mode in MODES.items())
    assert set(JUDGE_ASPECTS) == set(ultrafeedback.ASPECTS)


def test_a_mode_takes_the_configs_orders_where_the_config_says_it_does() -> None:
    for name, why_not in MODE_ORDERS.items():
        judge = JudgeConfig(models=["judge-m"], mode=name)
        # Orders only the modes that take them pass validation with.
        judge = judge.model_copy(update={"orders": ["original", "rotated"]})
        taken = MODES[name].orders(judge)
        assert taken == (("original",) if why_not else ("original", "rotated")), name
