"""A reward model as the judge, on vLLM's pooling runner in-process: a tiny random
sequence-classification model made locally scores every candidate and canary; its scores are
placed on 1-5 per batch, measured on canaries (no position effect by construction) and make
pairs. Beside an LLM judge in a panel, both are kept and their agreement is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.local_models.reward import make_tiny_reward_model

from .conftest import drop_batch, with_reward_model, write_config
from .test_pipeline_vllm import mt_bench_lines


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_reward_model(tmp_path_factory.mktemp("reward") / "tiny-reward", seed=4)


def reward_config(workdir: Path, tiny_models: Path, reward: Path, judge: dict) -> Path:
    """The tiny config with the reward model, `judge`, and canaries for every instruction."""
    models = with_reward_model(tiny_models, reward)
    measured = {"canaries": {"fraction": 1.0, "kinds": ["truncated", "shuffled"]}}
    return write_config(workdir, tiny_models, models=models, judge={**measured, **judge})


def tables(workdir: Path, *queries: str) -> list[list[tuple[Any, ...]]]:
    with duckdb.connect(str(workdir / "data" / "prefgen.duckdb"), read_only=True) as con:
        return [con.execute(query).fetchall() for query in queries]


@pytest.mark.slow
def test_a_reward_model_judges_and_a_panel_keeps_both_judges(
    workdir: Path, tiny_models: Path, reward_model: Path
) -> None:
    config = reward_config(
        workdir, tiny_models, reward_model, {"models": ["tiny-reward"], "mode": "reward"}
    )
    drop_batch(workdir, "reward.jsonl", mt_bench_lines(4))
    with dg.instance_for_test() as instance:
        materialize_batch(config, "reward.jsonl", instance)
    ratings, calibration, pairs = tables(
        workdir,
        "SELECT mode, purpose, rating, raw_score, shown, parse_status FROM ratings",
        "SELECT judge, mode, canaries, position_effect FROM judge_calibration",
        "SELECT count(*) FROM dpo_pairs",
    )
    # Every candidate and canary side scored once, its rating placed on 1-5 by its score.
    assert ratings and all(r[0] == "reward" and r[4] == 1 and r[5] == "ok" for r in ratings)
    assert {r[1] for r in ratings} == {"label", "canary"}
    assert min(r[2] for r in ratings) == 1.0 and max(r[2] for r in ratings) == 5.0
    assert len({r[3] for r in ratings}) > 1  # raw scores differ from text to text
    [(judge, mode, canaries, effect)] = calibration
    assert mode == "reward" and canaries > 0 and effect is None
    assert pairs[0][0] > 0

    # A panel: the tiny LLM judge (listwise) and the reward model, each in its own mode.
    panel = reward_config(
        workdir, tiny_models, reward_model, {"models": ["tiny-llama", "tiny-reward"]}
    )
    drop_batch(workdir, "panel.jsonl", mt_bench_lines(3))
    with dg.instance_for_test() as instance:
        batch, _ = materialize_batch(panel, "panel.jsonl", instance)
    modes, rows = tables(
        workdir,
        "SELECT DISTINCT mode FROM ratings WHERE batch_id = 'panel.jsonl' ORDER BY 1",
        "SELECT judge, mode FROM judge_calibration WHERE batch_id = 'panel.jsonl'",
    )
    assert modes == [("listwise",), ("reward",)]
    assert sorted(mode for _, mode in rows) == ["listwise", "listwise+reward", "reward"]
    # The two judges' agreement (Krippendorff's alpha over the candidates both rated).
    [materialized] = batch.asset_materializations_for_node("ratings")
    assert isinstance(materialized.metadata["judge_agreement_alpha"].value, float)
