"""Only new or changed work reaches the engine: a new instruction, a new judge setting (as
the automation conditions request it)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.definitions import build_definitions
from prefgen_dagster.defs.graph import build_graph
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.defs.resources import run_resources

from .conftest import drop_batch, write_config
from .test_pipeline_vllm import LLM_ASSETS, engine_calls, mt_bench_lines, table

STAGE_TABLES = ("completions", "evolved_completions", "ratings")


@pytest.mark.slow
def test_added_instruction_and_changed_judge_cost_only_their_calls(
    workdir: Path, tiny_models: Path
) -> None:
    config_path = write_config(workdir, tiny_models)
    lines = mt_bench_lines(4)
    with dg.instance_for_test() as instance:
        drop_batch(workdir, "grow.jsonl", lines[:3])
        first, _ = materialize_batch(config_path, "grow.jsonl", instance)
        assert [engine_calls(first, a) for a in LLM_ASSETS] == [12, 12, 3]

        # One more instruction in the same batch: only its 4 completions, 4 rewrites and one
        # judge request are new; the rows of the first three are kept as they were, not even
        # looked up in the cache (`llm/reuse.py`).
        db = workdir / "data" / "prefgen.duckdb"
        before = {name: table(db, name, "grow.jsonl") for name in STAGE_TABLES}
        drop_batch(workdir, "grow.jsonl", lines)
        grown, _ = materialize_batch(config_path, "grow.jsonl", instance)
        assert grown.success
        assert [engine_calls(grown, a) for a in LLM_ASSETS] == [4, 4, 1]
        assert [engine_calls(grown, a, "llm_requests") for a in LLM_ASSETS] == [4, 4, 1]
        assert [engine_calls(grown, a, "llm_reused") for a in LLM_ASSETS] == [12, 12, 3]
        for name in STAGE_TABLES:
            kept = [row for row in table(db, name, "grow.jsonl") if row in before[name]]
            assert len(kept) == len(before[name]), name

        # Another judge aspect, as Dagster sees it after a reload of the code location: the
        # automation tick asks for the ratings and what follows them, nothing before.
        before = dg.evaluate_automation_conditions(
            defs=build_definitions(str(config_path)), instance=instance
        )
        config = yaml.safe_load(config_path.read_text())
        config["judge"]["aspects"] = ["overall", "helpfulness"]
        config_path.write_text(yaml.safe_dump(config))
        defs = build_definitions(str(config_path))
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
        requested = {
            key.to_user_string(): tick.get_requested_partitions(key)
            for key in defs.resolve_asset_graph().get_all_asset_keys()
            if tick.get_num_requested(key)
        }
        # (The export follows on the tick after the pairs change.)
        assert requested == {
            "ratings": {"grow.jsonl"},
            "judge_scores": {"grow.jsonl"},
            "candidate_pairs": {"grow.jsonl"},
            "human_agreement": {"grow.jsonl"},
            "dpo_pairs": {"grow.jsonl"},
        }
        # Running what was requested asks the judge once more per instruction.
        rejudged = dg.materialize(
            build_graph(load_config(config_path)).definitions,
            selection=[
                "ratings",
                "judge_scores",
                "candidate_pairs",
                "human_agreement",
                "dpo_pairs",
            ],
            partition_key="grow.jsonl",
            instance=instance,
            resources=run_resources(str(config_path)),
        )
        assert rejudged.success
        assert engine_calls(rejudged, "ratings") == 4
        assert engine_calls(rejudged, "ratings", "llm_reused") == 0  # new settings: none kept
        [pairs] = rejudged.asset_materializations_for_node("dpo_pairs")
        [old_pairs] = grown.asset_materializations_for_node("dpo_pairs")
        assert pairs.metadata["pipeline_hash"].value != old_pairs.metadata["pipeline_hash"].value
