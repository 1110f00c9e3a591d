"""A real vLLM error in the middle of a stage, or an engine without memory for its KV cache,
ends the stage cleanly; finished chunks and stages stay cached."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from prefgen_dagster.cli import step_error_message
from prefgen_dagster.ingest import instruction_id
from prefgen_dagster.pipeline_run import materialize_batch

from .conftest import drop_batch, write_config
from .test_pipeline_vllm import engine_calls, mt_bench_lines

EARLIER_STAGES = ("pooled_completions", "evolved_completions")
PADDING = " Please consider every detail." * 200


def long_instruction_sorting_last(others: list[str]) -> str:
    """A long instruction whose id sorts after the others', so its judge request is the
    last chunk (judge requests go out in instruction-id order)."""
    last = max(instruction_id(text, None) for text in others)
    for variant in range(100):
        text = f"Variant {variant}: describe a lighthouse keeper's day.{PADDING}"
        if instruction_id(text, None) > last:
            return text
    raise AssertionError("no variant sorted last")


@pytest.mark.slow
def test_vllm_error_and_out_of_memory_keep_finished_work(workdir: Path, tiny_models: Path) -> None:
    short = [json.loads(line)["instruction"] for line in mt_bench_lines(3)]
    texts = [*short, long_instruction_sorting_last(short)]
    config_path = write_config(workdir, tiny_models, engine={"chunk_size": 1})
    config = yaml.safe_load(config_path.read_text())
    # A judge whose context holds the short instructions' prompts but not the long one's:
    # vLLM refuses that request when it reaches the engine.
    config["models"]["small-judge"] = {**config["models"]["tiny-llama"], "max_model_len": 2048}
    config["judge"]["models"] = ["small-judge"]
    config_path.write_text(yaml.safe_dump(config))
    drop_batch(workdir, "mixed.jsonl", [json.dumps({"instruction": t}) for t in texts])

    db = workdir / "data" / "prefgen.duckdb"
    with dg.instance_for_test() as instance:
        failed, _ = materialize_batch(config_path, "mixed.jsonl", instance, log_level="ERROR")
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failure.step_key == "ratings"
        assert "VLLMValidationError" in str(failure.event_specific_data.error)
        with duckdb.connect(str(db), read_only=True) as con:
            judged = con.execute(
                "SELECT count(*) FROM llm_calls WHERE request LIKE '%\"json_schema\": {%'"
            ).fetchall()[0][0]
        assert judged == 3  # the three short instructions' judge requests were cached

        # The judge now has no memory for its KV cache (as a GPU too small for the model
        # would): vLLM refuses to start, the stage says so, nothing finished is lost.
        small = config["models"]["small-judge"]
        small["max_model_len"] = 4096
        small["engine_kwargs"] = {**small["engine_kwargs"], "kv_cache_memory_bytes": 8192}
        config_path.write_text(yaml.safe_dump(config))
        no_memory, _ = materialize_batch(config_path, "mixed.jsonl", instance, log_level="ERROR")
        assert not no_memory.success
        assert [engine_calls(no_memory, a) for a in EARLIER_STAGES] == [0, 0]
        [failure] = [e for e in no_memory.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failure.step_key == "ratings"
        # What `prefgen run` prints for the failed step: our summary, not Dagster's wrapper.
        message = step_error_message(failure.event_specific_data.error)
        assert "EngineFailed: model 'small-judge'" in message and "failed to start" in message
        assert "No available memory for the cache blocks" in message
        assert "It ran out of memory" in message
        assert "3 of this stage's 4 distinct requests are cached" in message

        small["engine_kwargs"]["kv_cache_memory_bytes"] = 64 * 1024 * 1024
        config_path.write_text(yaml.safe_dump(config))
        resumed, _ = materialize_batch(config_path, "mixed.jsonl", instance, log_level="ERROR")
        assert resumed.success
        assert [engine_calls(resumed, a) for a in EARLIER_STAGES] == [0, 0]
        [ratings] = resumed.asset_materializations_for_node("ratings")
        assert ratings.metadata["llm_cache_hits"].value == 3
        assert ratings.metadata["llm_engine_calls"].value == 1
