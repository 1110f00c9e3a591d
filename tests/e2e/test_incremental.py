"""Only new or changed work reaches the engine: a new instruction, a new judge setting."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from prefgen_dagster.pipeline_run import materialize_batch

from .conftest import drop_batch, write_config
from .test_pipeline_vllm import LLM_ASSETS, engine_calls, mt_bench_lines


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
        # judge request are new; the first three instructions come from the cache.
        drop_batch(workdir, "grow.jsonl", lines)
        grown, _ = materialize_batch(config_path, "grow.jsonl", instance)
        assert grown.success
        assert [engine_calls(grown, a) for a in LLM_ASSETS] == [4, 4, 1]

        # Another judge aspect: completions and rewrites are reused, only ratings are asked.
        config = yaml.safe_load(config_path.read_text())
        config["judge"]["aspects"] = ["overall", "helpfulness"]
        config_path.write_text(yaml.safe_dump(config))
        rejudged, _ = materialize_batch(config_path, "grow.jsonl", instance)
        assert rejudged.success
        assert [engine_calls(rejudged, a) for a in LLM_ASSETS[:2]] == [0, 0]
        assert engine_calls(rejudged, "ratings") == 4  # one new request per instruction
        [pairs] = rejudged.asset_materializations_for_node("dpo_pairs")
        [old_pairs] = grown.asset_materializations_for_node("dpo_pairs")
        assert pairs.metadata["pipeline_hash"].value != old_pairs.metadata["pipeline_hash"].value
