"""`plan_judging`, `ordered` and `rating_rows` for a listwise panel: judges x aspects x orders
(the other judge modes, canaries and position probes: test_judge_modes.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.judge.modes import ordered
from prefgen_dagster.judge.parse import parse_listwise_output
from prefgen_dagster.judge.plan import (
    judge_groups,
    judge_prompt_tokens,
    plan_judging,
    rating_rows,
    request_messages,
)
from prefgen_dagster.judge.prompt import ASPECTS, NOT_APPLICABLE
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.llm.tokens import SEAM_TOKENS, TokenCounters, prompts_tokens
from prefgen_dagster.stages import settings_hash

BATCH = "b1.jsonl"
MakeConfig = Callable[..., PipelineConfig]

ASPECT_NAMES = ["helpfulness", "honesty", "instruction_following", "truthfulness"]
ORDERS = ["original", "reversed"]
JUDGES = ["judge-m", "judge-n"]

MODELS = {
    "gen-a": {"path": "models/gen-a"},
    "gen-b": {"path": "models/gen-b"},
    "judge-m": {"path": "models/judge"},
    "judge-n": {"path": "models/judge-2"},
}
INSTRUCTIONS = [
    {"instruction_id": "iid-1", "instruction": "Explain tides.", "system_prompt": None},
    {"instruction_id": "iid-2", "instruction": "Write a haiku.", "system_prompt": None},
]
BY_ID = {row["instruction_id"]: row for row in INSTRUCTIONS}
CANDIDATES = [
    {"completion_id": "c-3", "instruction_id": "iid-1", "text": "third text"},
    {"completion_id": "c-1", "instruction_id": "iid-1", "text": "first text"},
    {"completion_id": "c-2", "instruction_id": "iid-1", "text": "second text"},
    {"completion_id": "d-2", "instruction_id": "iid-2", "text": "haiku two"},
    {"completion_id": "d-1", "instruction_id": "iid-2", "text": None},  # empty answer
]
COUNTS = {"iid-1": 3, "iid-2": 2}


def panel(make_config: MakeConfig, **judge: Any) -> PipelineConfig:
    settings = {
        "models": JUDGES,
        "aspects": ASPECT_NAMES,
        "orders": ORDERS,
        "rationale_max_chars": 80,
        "max_reasks": 2,
        **judge,
    }
    return make_config(models=MODELS, judge=settings)


@pytest.fixture
def config(make_config: MakeConfig) -> PipelineConfig:
    return panel(make_config)


def label_plans(
    config: PipelineConfig, attempt: int = 0, only: set[tuple] | None = None
) -> list[Planned]:
    """The judge requests for CANDIDATES (no canaries)."""
    return plan_judging(judge_groups(CANDIDATES, [], config), BY_ID, config, attempt, only)


def key(iid: str, judge: str, aspect: str, order: str) -> tuple[str, ...]:
    return ("label", iid, judge, aspect, order)


def plans_by_key(plans: list[Planned]) -> dict[tuple, Planned]:
    return {plan.row.key: plan for plan in plans}


def user_text(plan: Planned) -> str:
    return plan.request.messages[1]["content"]


# --- ordered -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "items", "expected"),
    [
        ("original", [1], [1]),
        ("original", [1, 2], [1, 2]),
        ("original", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
        ("reversed", [1], [1]),
        ("reversed", [1, 2], [2, 1]),
        ("reversed", [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
        ("rotated", [1], [1]),
        ("rotated", [1, 2], [2, 1]),
        ("rotated", [1, 2, 3, 4, 5], [3, 4, 5, 1, 2]),
        ("rotated", [], []),
    ],
)
def test_ordered(order: str, items: list[int], expected: list[int]) -> None:
    given = list(items)
    assert ordered(items, order) == expected
    assert items == given  # the input is left as it was


# --- the panel's requests ------------------------------------------------------------------


def test_one_request_per_instruction_judge_aspect_order(config: PipelineConfig) -> None:
    plans = label_plans(config)
    per_instruction = len(JUDGES) * len(ASPECT_NAMES) * len(ORDERS)
    assert per_instruction == 16
    assert Counter(p.row.instruction_id for p in plans) == {"iid-1": 16, "iid-2": 16}
    keys = [p.row.key for p in plans]
    assert len(set(keys)) == len(keys) == 32
    assert set(keys) == {
        key(iid, judge, aspect, order)
        for iid in COUNTS
        for judge in JUDGES
        for aspect in ASPECT_NAMES
        for order in ORDERS
    }
    assert Counter(p.model_name for p in plans) == {"judge-m": 16, "judge-n": 16}
    assert {p.request.model for p in plans} == {"models/judge", "models/judge-2"}
    # Every request is a distinct call with its own seed.
    assert len({p.request.call_id for p in plans}) == 32
    assert len({p.request.seed for p in plans}) == 32
    for plan in plans:
        _, iid, _, aspect, order = plan.row.key
        assert plan.row.aspect == aspect
        assert plan.row.order_name == order
        assert plan.row.purpose == "label"
        assert plan.row.attempt == 0
        assert len(plan.row.completion_ids) == COUNTS[iid]
        assert ASPECTS[aspect].title in user_text(plan)


def test_schema_fixes_the_count_and_allows_na_only_where_the_aspect_does(
    config: PipelineConfig,
) -> None:
    for plan in label_plans(config):
        schema = plan.request.json_schema
        assert schema is not None
        array = schema["properties"]["ratings"]
        count = COUNTS[plan.row.instruction_id]
        assert array["minItems"] == array["maxItems"] == count
        item = array["items"]
        assert item["required"] == ["rating", "rationale"]
        assert item["properties"]["rationale"] == {"type": "string", "maxLength": 80}
        number = {"type": "integer", "minimum": 1, "maximum": 5}
        if plan.row.aspect in ("honesty", "truthfulness"):
            assert item["properties"]["rating"] == {
                "anyOf": [number, {"type": "string", "enum": ["N/A"]}]
            }
            assert '"N/A" - the aspect does not apply' in user_text(plan)
        else:
            assert item["properties"]["rating"] == number
            assert "N/A" not in user_text(plan)
        assert f"exactly {count} entries" in user_text(plan)


def test_reversed_order_shows_completions_reversed(config: PipelineConfig) -> None:
    plans = plans_by_key(label_plans(config))
    original = plans[key("iid-1", "judge-m", "helpfulness", "original")]
    reversed_ = plans[key("iid-1", "judge-m", "helpfulness", "reversed")]
    assert original.row.completion_ids == ["c-1", "c-2", "c-3"]
    assert reversed_.row.completion_ids == ["c-3", "c-2", "c-1"]
    text = user_text(reversed_)
    assert "## Response 1\nthird text" in text
    assert "## Response 3\nfirst text" in text
    assert text.index("third text") < text.index("second text") < text.index("first text")
    assert original.request.call_id != reversed_.request.call_id
    # A missing text is shown as an empty response, not as "None".
    assert "## Response 1\n\n" in user_text(
        plans[key("iid-2", "judge-m", "helpfulness", "original")]
    )


def answer(*ratings: int | str, rationale: bool = True) -> str:
    entries = [{"rating": r, **({"rationale": f"why {r}"} if rationale else {})} for r in ratings]
    return json.dumps({"ratings": entries})


def rows_for(plan: Planned, raw: str, config: PipelineConfig) -> list[dict[str, Any]]:
    aspect = plan.row.aspect
    verdict = parse_listwise_output(
        raw,
        len(plan.row.completion_ids),
        allow_na=ASPECTS[aspect].allows_na,
        with_rationale=config.judge.with_rationale,
    )
    return rating_rows(plan, verdict, raw, config, BATCH)


def test_rating_rows_map_positions_back_to_completions(config: PipelineConfig) -> None:
    plans = plans_by_key(label_plans(config))
    # The judge saw third, second, first and rated them 5, 3, 1.
    reversed_ = plans[key("iid-1", "judge-n", "helpfulness", "reversed")]
    rows = rows_for(reversed_, answer(5, 3, 1), config)
    assert [(r["completion_id"], r["position"], r["rating"]) for r in rows] == [
        ("c-3", 1, 5),
        ("c-2", 2, 3),
        ("c-1", 3, 1),
    ]
    assert [r["rationale"] for r in rows] == ["why 5", "why 3", "why 1"]
    for row in rows:
        assert (row["judge"], row["aspect"]) == ("models/judge-2", "helpfulness")
        assert (row["judge_order"], row["order_name"]) == (1, "reversed")
        assert (row["parse_status"], row["not_applicable"], row["attempts"]) == ("ok", False, 1)
        assert (row["instruction_id"], row["purpose"], row["mode"]) == (
            "iid-1",
            "label",
            "listwise",
        )
        assert row["shown"] == 3
    # The same ratings in the original order land on the other completions.
    original_plan = plans[key("iid-1", "judge-n", "helpfulness", "original")]
    original = rows_for(original_plan, answer(5, 3, 1), config)
    assert {r["completion_id"]: r["rating"] for r in original} == {"c-1": 5, "c-2": 3, "c-3": 1}


def test_na_is_a_null_rating_marked_not_applicable(config: PipelineConfig) -> None:
    plans = plans_by_key(label_plans(config))
    truthfulness = plans[key("iid-1", "judge-m", "truthfulness", "reversed")]
    rows = rows_for(truthfulness, answer(4, "N/A", 2), config)
    assert [(r["completion_id"], r["rating"], r["not_applicable"]) for r in rows] == [
        ("c-3", 4, False),
        ("c-2", None, True),
        ("c-1", 2, False),
    ]
    assert {r["parse_status"] for r in rows} == {"ok"}
    # Where the aspect does not allow it, N/A is a parse failure: all NULL, raw kept.
    raw = answer(4, NOT_APPLICABLE, 2)
    failed = rows_for(plans[key("iid-1", "judge-m", "helpfulness", "reversed")], raw, config)
    assert [(r["rating"], r["not_applicable"]) for r in failed] == [(None, False)] * 3
    assert {(r["parse_status"], r["raw_output"]) for r in failed} == {("na_not_allowed", raw)}


# --- re-asks -------------------------------------------------------------------------------


def test_only_restricts_reasks_to_the_given_keys(config: PipelineConfig) -> None:
    first = plans_by_key(label_plans(config))
    failed = {
        key("iid-1", "judge-n", "honesty", "reversed"),
        key("iid-2", "judge-m", "helpfulness", "original"),
    }
    again = label_plans(config, attempt=1, only=failed)
    assert {p.row.key for p in again} == failed
    assert len(again) == 2
    for plan in again:
        old = first[plan.row.key]
        assert plan.row.attempt == 1
        assert plan.row.completion_ids == old.row.completion_ids
        assert plan.request.messages == old.request.messages
        assert plan.request.seed != old.request.seed
        assert plan.request.sampling.temperature == 0.7
    assert label_plans(config, attempt=1, only=set()) == []
    reasked = rows_for(again[0], answer(5, 4, 3), config)
    assert {r["attempts"] for r in reasked} == {2}


# --- score-only mode ------------------------------------------------------------------------


def test_without_rationale_schema_and_prompt_ask_for_ratings_only(make_config: MakeConfig) -> None:
    config = panel(make_config, with_rationale=False)
    plans = label_plans(config)
    assert len(plans) == 32
    for plan in plans:
        assert plan.request.json_schema is not None
        item = plan.request.json_schema["properties"]["ratings"]["items"]
        assert list(item["properties"]) == ["rating"]
        assert item["required"] == ["rating"]
        text = user_text(plan)
        assert '{"ratings": [{"rating": <1-5>}, ...]}' in text
        assert "rationale" not in text
    with_rationale = label_plans(panel(make_config))
    assert '{"rating": <1-5>, "rationale": "<one or two sentences>"}' in user_text(
        with_rationale[0]
    )
    rows = rows_for(plans[0], answer(5, 1, 3, rationale=False), config)
    assert [(r["rating"], r["rationale"]) for r in rows] == [(5, None), (1, None), (3, None)]


# --- completions are reused when only the judge changes ------------------------------------


def test_changing_only_the_judge_keeps_completion_calls(make_config: MakeConfig) -> None:
    single = make_config(models=MODELS)
    other_panels = [
        panel(make_config),
        panel(make_config, with_rationale=False, seed=9, orders=["rotated"]),
        make_config(models=MODELS, judge={"model": "judge-n", "aspects": ["honesty"]}),
    ]
    before = plan_completions(INSTRUCTIONS, single, BATCH)
    judge_calls = {p.request.call_id for p in label_plans(single)}
    for changed in other_panels:
        after = plan_completions(INSTRUCTIONS, changed, BATCH)
        assert [p.request.call_id for p in after] == [p.request.call_id for p in before]
        assert [p.row for p in after] == [p.row for p in before]
        assert settings_hash(changed, "generation") == settings_hash(single, "generation")
        assert settings_hash(changed, "judge") != settings_hash(single, "judge")
        # ...while the judge's own requests are new.
        assert judge_calls.isdisjoint(p.request.call_id for p in label_plans(changed))


@pytest.mark.parametrize("mode", ["listwise", "pointwise", "pairwise"])
def test_judge_prompts_counted_in_parts_are_never_below_the_whole_count(
    make_config: MakeConfig, tmp_path: Path, mode: str
) -> None:
    # A byte-level BPE trained on judge prompts themselves, with and without their
    # instruction and texts, so that it knows the pieces either way.
    tokenizers = pytest.importorskip("tokenizers")
    questions = [
        "Explain tides.",
        "Write a haiku about\nthe sea, then its French translation: «la mer».",
        "What is 17 × 23? Show the steps.",
    ]
    rows = [{"instruction_id": f"i{k}", "instruction": q} for k, q in enumerate(questions)]
    corpus = [
        m["content"]
        for question, texts in [*((row["instruction"], ["a text", "more text"]) for row in rows),
                                ("", ["", ""])]
        for m in request_messages(make_config(), "judge-m", question, texts, "overall")
    ]  # fmt: skip
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    # Words with their leading space, and runs of line breaks as one piece (as Qwen2's and
    # SmolLM2's tokenizers split): an empty instruction between two line breaks then takes
    # fewer tokens than the two apart.
    pieces = tokenizers.Regex(r" ?[^\s]+|\s*[\r\n]+|\s+")
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [
            tokenizers.pre_tokenizers.Split(pieces, behavior="isolated"),
            tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.train_from_iterator(corpus * 20, tokenizers.trainers.BpeTrainer(vocab_size=1000))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    models = {**MODELS, "judge-m": {"path": str(tmp_path)}}
    config = make_config(models=models, judge={"model": "judge-m", "mode": mode})
    candidates = [
        {"completion_id": f"{row['instruction_id']}:{k}", "instruction_id": row["instruction_id"],
         "text": text}
        for row in rows
        for k, text in enumerate(["Tides follow the moon.", "Ocean\nwaves.", "17×23 = 391"])
    ]  # fmt: skip
    groups = judge_groups(candidates, [], config)
    plans = plan_judging(groups, {row["instruction_id"]: row for row in rows}, config, attempt=0)
    counters = TokenCounters(config)
    counter = counters.for_model("judge-m")
    assert counter.exact
    texts = {c["completion_id"]: c["text"] for c in candidates}
    parts = judge_prompt_tokens(plans, {r["instruction_id"]: r for r in rows}, counters, config)
    for plan, size in zip(plans, parts, strict=True):
        shown = plan.row.completion_ids
        whole = prompts_tokens([plan.request.messages], counter, config)[0]
        bound = size + sum(counter.count([texts[cid] for cid in shown]))
        assert whole <= bound <= whole + 2 * (1 + len(shown)) * SEAM_TOKENS
