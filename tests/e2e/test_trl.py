"""The export trains as it is: TRL's DPOTrainer takes a few steps on it (CPU, tiny model), and
each row carries its provenance (settings, judge, models by name, the input's own fields)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from datasets import Dataset

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.stages import pipeline_hash

from .conftest import drop_batch, exported_pairs, write_config
from .test_pipeline_vllm import MT_BENCH


@pytest.mark.slow
def test_dpo_trainer_trains_on_the_export(workdir: Path, tiny_models: Path) -> None:
    config_path = write_config(workdir, tiny_models)
    # MT-Bench rows as they come: `id`, `category` and `source` beside the instruction.
    lines = MT_BENCH.read_text().splitlines()[:6]
    drop_batch(workdir, "mt-bench.jsonl", lines)
    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(config_path, "mt-bench.jsonl", instance)
    assert batch.success and export is not None and export.success

    pairs = exported_pairs(workdir)
    assert len(pairs) >= 1
    row = pairs[0]
    source = {r["id"]: r for r in map(json.loads, lines)}
    assert row["input_category"] == source[row["input_id"]]["category"]
    assert row["judges"] == ["tiny-llama"] and row["judge_mode"] == "listwise"
    assert row["settings_hash"] == pipeline_hash(load_config(config_path))
    assert row["split"] in {"train", "test"}
    # Only one of the two pool members has a system prompt: the column is there, maybe None.
    assert "chosen_generation_system_prompt" in row

    trained(pairs, workdir, tiny_models, steps=3)


def trained(pairs: Dataset, workdir: Path, tiny_models: Path, steps: int) -> None:
    """DPOTrainer takes `steps` steps on the pairs (the tiny Qwen2 model, on CPU), each with
    a finite loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    policy = tiny_models / "tiny-qwen2"
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(policy),
        args=DPOConfig(
            output_dir=str(workdir / "dpo"),
            max_steps=steps,
            per_device_train_batch_size=2,
            max_length=256,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
        ),
        train_dataset=pairs,
        processing_class=AutoTokenizer.from_pretrained(policy),
    )
    result = trainer.train()
    assert result.global_step == steps
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == steps and all(math.isfinite(loss) for loss in losses)


def conversation(index: int) -> list[dict[str, str]]:
    """Three user turns, the first two answered, the last one not."""
    topic = ["tides", "rainbows", "volcanoes", "glaciers"][index]
    return [
        {"role": "user", "content": f"I am curious about {topic}. Where do I start?"},
        {"role": "assistant", "content": f"Start with what makes {topic} happen."},
        {"role": "user", "content": "What is the main cause?"},
        {"role": "assistant", "content": "Mostly forces acting over a long time."},
        {"role": "user", "content": f"Explain {topic} to a ten-year-old in two sentences."},
    ]


@pytest.mark.slow
def test_a_conversation_goes_through_every_stage_and_trains(
    workdir: Path, tiny_models: Path
) -> None:
    config_path = write_config(workdir, tiny_models)
    chats = {index: conversation(index) for index in range(4)}
    drop_batch(workdir, "chats.jsonl", [json.dumps({"messages": chat}) for chat in chats.values()])
    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(config_path, "chats.jsonl", instance)
    assert batch.success and export is not None and export.success

    with duckdb.connect(str(workdir / "data" / "prefgen.duckdb"), read_only=True) as con:
        asked = {
            table: [
                json.loads(request)["messages"]
                for (request,) in con.execute(
                    f"SELECT l.request FROM {table} JOIN llm_calls AS l USING (call_id)"
                ).fetchall()
            ]
            for table in ("completions", "evolved_completions", "ratings")
        }
    # The pool got every turn up to the last user turn (after its member's system prompt).
    assert len(asked["completions"]) == 4 * 4
    assert all(messages[-5:] in chats.values() for messages in asked["completions"])
    # The rewriter and the judge were shown the conversation, not its last turn alone.
    for table in ("evolved_completions", "ratings"):
        shown = ["\n".join(m["content"] for m in messages) for messages in asked[table]]
        assert shown and all("What is the main cause?" in text for text in shown), table

    pairs = exported_pairs(workdir)
    assert len(pairs) >= 1
    assert all(row["prompt"] in chats.values() for row in pairs)
    trained(pairs, workdir, tiny_models, steps=2)
