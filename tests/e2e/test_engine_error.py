"""A prompt too long for a vLLM model fails alone, and an engine without memory for its KV
cache ends the stage cleanly; finished requests and stages stay cached."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.config.base import ModelSpec, SamplingParams
from prefgen_dagster.defs.assets import LATER_PROMPTS_FIT as FITS
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.defs.report import step_error_message
from prefgen_dagster.llm.engines.vllm_offline import VLLMOfflineEngine, _sampling_params
from prefgen_dagster.llm.types import LLMRequest

from .conftest import drop_batch, write_config
from .test_pipeline_vllm import engine_calls, mt_bench_lines

EARLIER_STAGES = ("completions", "evolved_completions")
LONG = "Describe a lighthouse keeper's day." + " Please consider every detail." * 200


@pytest.mark.slow
def test_too_long_prompt_and_out_of_memory_keep_finished_work(
    workdir: Path, tiny_models: Path
) -> None:
    short = [json.loads(line)["instruction"] for line in mt_bench_lines(3)]
    config_path = write_config(workdir, tiny_models)
    config = yaml.safe_load(config_path.read_text())
    # A judge whose context holds the short instructions' prompts but not the long one's.
    # All four judge requests go to vLLM in one chunk, which vLLM would refuse as a whole.
    config["models"]["small-judge"] = {**config["models"]["tiny-llama"], "max_model_len": 2048}
    config["judge"]["models"] = ["small-judge"]
    config_path.write_text(yaml.safe_dump(config))
    drop_batch(workdir, "mixed.jsonl", [json.dumps({"instruction": t}) for t in [*short, LONG]])

    db = workdir / "data" / "prefgen.duckdb"
    with dg.instance_for_test() as instance:
        first, _ = materialize_batch(config_path, "mixed.jsonl", instance, log_level="ERROR")
        # The check after ingest saw it coming (the estimate, every answer at max_tokens)...
        [fits] = [e for e in first.get_asset_check_evaluations() if e.check_name == FITS]
        assert not fits.passed and fits.severity == dg.AssetCheckSeverity.WARN
        [warning] = fits.metadata["context_warnings"].value
        assert "1 of 4 instructions may give judge requests longer than 'small-judge'" in warning
        # ...and the judge stage goes on without that one request, which is recorded.
        failed_steps = {
            e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"
        }
        assert "ratings" not in failed_steps
        [rated] = first.asset_materializations_for_node("ratings")
        assert rated.metadata["llm_failed"].value == 1
        assert rated.metadata["llm_failed_by_kind"].value == {"PromptTooLong": 1}
        with duckdb.connect(str(db), read_only=True) as con:
            judged = con.execute(
                "SELECT count(*) FROM llm_calls WHERE request LIKE '%\"json_schema\": {%'"
            ).fetchall()[0][0]
            [[reason]] = con.execute("SELECT error FROM failed_calls").fetchall()
            [[status]] = con.execute(
                "SELECT DISTINCT parse_status FROM ratings WHERE error IS NOT NULL"
            ).fetchall()
        assert judged == 3  # the short instructions were judged and cached all the same
        assert reason.startswith("PromptTooLong: the prompt has ")
        assert "max_model_len is 2048" in reason
        assert status == "request_failed"

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


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen2"])
def test_prompts_are_rendered_and_answered_as_vllm_chat_does(tiny_models: Path, model: str) -> None:
    """The engine renders prompts itself (once: their lengths keep too-long ones away from
    vLLM) and queues token ids: the prompts and the answers must be those of `LLM.chat`."""
    spec = ModelSpec.model_validate(yaml.safe_load(TINY_CONFIG.read_text())["models"][model])
    engine = VLLMOfflineEngine(str(tiny_models / model), spec)
    try:
        requests = [
            LLMRequest(model, messages, SamplingParams(max_tokens=8), seed=1)
            for messages in (
                [{"role": "user", "content": "Hi."}],
                [{"role": "system", "content": "Be brief."}, {"role": "user", "content": LONG}],
                [{"role": "user", "content": "Ünïcödé, emoji 🚀 and\ttabs\n\nand lines."}],
            )
        ]
        answered = engine.generate(requests)
        by_chat = engine._llm.chat(
            [request.messages for request in requests],
            sampling_params=[_sampling_params(request) for request in requests],
            use_tqdm=False,
        )
        assert engine.prompt_token_ids(requests) == [out.prompt_token_ids for out in by_chat]
        assert [result.prompt_tokens for result in answered] == [
            len(out.prompt_token_ids) for out in by_chat
        ]
        assert [result.text for result in answered] == [out.outputs[0].text for out in by_chat]
    finally:
        engine.close()
