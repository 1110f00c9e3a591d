"""Two judges x four UltraFeedback aspects x two orders on the tiny vLLM models."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from prefgen_dagster.defs.pipeline_run import materialize_batch

from .conftest import drop_batch, write_config
from .test_pipeline_vllm import mt_bench_lines

ASPECTS = ["helpfulness", "honesty", "instruction_following", "truthfulness"]


@pytest.mark.slow
def test_panel_aspects_orders_and_all_pairs(workdir: Path, tiny_models: Path) -> None:
    config_path = write_config(
        workdir,
        tiny_models,
        judge={
            "models": ["tiny-qwen2", "tiny-llama"],
            "aspects": ASPECTS,
            "orders": ["original", "reversed"],
            "rationale_max_chars": 40,
            "sampling": {"temperature": 1.0},  # greedy tiny judges tie everything
        },
        pairing={"strategy": "all_pairs", "min_margin": 0.5},
    )
    # A strict diversity guard, so that some completions are regenerated for real.
    config = yaml.safe_load(config_path.read_text())
    config["generation"]["diversity"] = {"max_similarity": 0.05, "max_regenerations": 1}
    config_path.write_text(yaml.safe_dump(config))
    drop_batch(workdir, "panel.jsonl", mt_bench_lines(3))
    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(config_path, "panel.jsonl", instance)
    assert batch.success and export is not None and export.success

    with duckdb.connect(str(workdir / "data" / "prefgen.duckdb"), read_only=True) as con:
        shape = con.execute(
            "SELECT count(*), count(DISTINCT judge), count(DISTINCT aspect), "
            "count(DISTINCT order_name), count(DISTINCT completion_id) FROM ratings"
        ).fetchall()[0]
        per_request = con.execute(
            "SELECT list(position ORDER BY position) AS p, count(*) FROM ratings "
            "GROUP BY instruction_id, judge, aspect, judge_order"
        ).fetchall()
        mirrored = con.execute(
            "SELECT count(*) FROM ratings o JOIN ratings r USING "
            "(instruction_id, completion_id, judge, aspect) "
            "WHERE o.order_name = 'original' AND r.order_name = 'reversed' "
            "AND o.position + r.position <> 9"
        ).fetchall()[0][0]
        na_aspects = {
            a
            for (a,) in con.execute(
                "SELECT DISTINCT aspect FROM ratings WHERE not_applicable"
            ).fetchall()
        }
        ok_share = con.execute("SELECT avg((parse_status = 'ok')::INT) FROM ratings").fetchall()[0][
            0
        ]
        regenerated = con.execute(
            "SELECT count(*) FILTER (WHERE regenerations = 1), count(*) FILTER (WHERE similarity "
            "IS NULL), count(*) FILTER (WHERE too_similar AND similarity <= 0.05) FROM completions"
        ).fetchall()[0]
        pairs = con.execute(
            "SELECT instruction_id, chosen_rating, rejected_rating, judge_agreement, strategy "
            "FROM dpo_pairs"
        ).fetchall()

    # 3 instructions x 8 completions (4 pooled + 4 evolved), each rated by 2 judges on 4
    # aspects in 2 orders: 3 x 2 x 4 x 2 = 48 judge requests of 8 ratings each.
    assert shape == (384, 2, 4, 2, 24)
    assert len(per_request) == 48
    assert all(positions == list(range(1, 9)) for positions, _ in per_request)
    assert mirrored == 0  # the reversed order really showed the texts reversed
    assert na_aspects <= {"honesty", "truthfulness"}
    assert ok_share > 0.9

    assert pairs, "all_pairs found no pair with differing scores"
    assert all(chosen > rejected for _, chosen, rejected, _, _ in pairs)
    assert all(0.0 <= agreement <= 1.0 for *_, agreement, _ in pairs)
    assert {strategy for *_, strategy in pairs} == {"all_pairs"}
    per_instruction = [sum(1 for p in pairs if p[0] == i) for i in {p[0] for p in pairs}]
    assert max(per_instruction) > 1 and max(per_instruction) <= 28  # several rejected per prompt

    # The guard asked again for every completion too close to an earlier one, once.
    [pooled_event] = batch.asset_materializations_for_node("completions")
    assert regenerated[0] > 0
    assert pooled_event.metadata["llm_engine_calls"].value == 12 + regenerated[0]
    assert regenerated[1:] == (3, 0)  # first completion per instruction has no similarity

    [ratings_event] = batch.asset_materializations_for_node("ratings")
    meta = {key: value.value for key, value in ratings_event.metadata.items()}
    assert (
        set(meta["parse_failure_rate_per_judge"])
        == {
            "./models/tiny-qwen2",
            "./models/tiny-llama",
        }
        or len(meta["parse_failure_rate_per_judge"]) == 2
    )
    assert meta["order_comparisons"] == 3 * 2 * 4
    assert 0.0 <= meta["order_disagreement_rate"] <= 1.0
    assert meta["judge_agreement_alpha"] is not None
    assert meta["llm_engine_calls"] >= 48
    assert sorted(meta["self_judging_models"]) == ["tiny-llama", "tiny-qwen2"]
