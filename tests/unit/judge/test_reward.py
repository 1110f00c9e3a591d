"""Reward models as judges, without an engine: the config's rules, the mode's requests and
parser, and the per-batch placing of raw scores on 1-5 (`judge/reward.py`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.judge.modes import MODES, mode_of
from prefgen_dagster.judge.parse import parse_reward_output
from prefgen_dagster.judge.plan import judge_groups, plan_judging
from prefgen_dagster.judge.reward import rated_by_scores
from tests.unit.conftest import BASE_CONFIG

MakeConfig = Callable[..., PipelineConfig]
REWARD = {"path": "models/rm", "kind": "reward"}


def with_reward(make_config: MakeConfig, **judge: object) -> PipelineConfig:
    models = {**BASE_CONFIG["models"], "rm": REWARD}
    return make_config(models=models, judge={"rationale_max_chars": 50, **judge})


def test_a_panel_judge_rates_in_its_kinds_mode(make_config: MakeConfig) -> None:
    panel = with_reward(make_config, models=["judge-m", "rm"], mode="pointwise")
    assert mode_of(panel, "judge-m").name == "pointwise" and mode_of(panel, "rm").name == "reward"
    alone = with_reward(make_config, models=["rm"], mode="reward")
    assert mode_of(alone, "rm") is MODES["reward"]


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        ({"judge": {"models": ["judge-m", "rm"], "mode": "reward"}}, "needs every judge to be"),
        ({"evol_quality": {"model": "rm"}}, "score texts and cannot write them: ['rm']"),
        ({"judge": {"models": ["rm"]}, "rm": {**REWARD, "backend": "openai"}}, "needs backend"),
    ],
)
def test_what_a_reward_model_cannot_be(
    make_config: MakeConfig, sections: dict, reason: str
) -> None:
    spec = sections.pop("rm", REWARD)
    if spec.get("backend") == "openai":
        spec = {**spec, "base_urls": ["http://127.0.0.1:1/v1"]}
    models = {**BASE_CONFIG["models"], "rm": spec}
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        make_config(models=models, **sections)


def test_reward_requests_are_one_text_each_with_no_schema(make_config: MakeConfig) -> None:
    config = with_reward(make_config, models=["judge-m", "rm"])
    iid = "i1"
    candidates = [
        {"completion_id": f"c{n}", "instruction_id": iid, "text": f"Answer {n}"} for n in range(3)
    ]
    groups = judge_groups(candidates, [], config, set())
    instructions = {iid: {"instruction": "Why is the sky blue?", "system_prompt": None}}
    plans = plan_judging(groups, instructions, config, attempt=0)
    rewards = [plan for plan in plans if plan.model_name == "rm"]
    assert [plan.row.mode for plan in plans if plan.model_name == "judge-m"] == ["listwise"]
    assert len(rewards) == 3 and all(plan.row.mode == "reward" for plan in rewards)
    first = rewards[0].request
    assert first.json_schema is None and [m["role"] for m in first.messages] == [
        "user",
        "assistant",
    ]
    assert first.messages[0]["content"] == "Why is the sky blue?"


def test_a_reward_answer_is_a_number_or_a_named_failure() -> None:
    assert parse_reward_output("-1.25").scores == [-1.25]
    for bad in ("", None, "nan", "inf", "good"):
        verdict = parse_reward_output(bad)
        assert not verdict.ok and verdict.status == "not_a_score"


def test_scores_are_placed_on_one_to_five_per_judge() -> None:
    ratings = pl.DataFrame(
        {
            "judge": ["rm", "rm", "rm", "rm", "llm", "other-rm"],
            "raw_score": [-2.0, 0.0, 2.0, None, None, 7.5],
            "rating": [None, None, None, None, 4.0, None],
        }
    )
    placed = rated_by_scores(ratings)["rating"].to_list()
    # The lowest of a model's scores is 1, its highest 5; a failed request stays NULL; an LLM
    # judge's rating is its own; a model with one score sits in the middle.
    assert placed[:3] == [1.0, 3.0, 5.0] and placed[3] is None
    assert placed[4] == 4.0 and placed[5] == 3.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in placed)
