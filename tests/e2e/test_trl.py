"""The export trains as it is: TRL's DPOTrainer takes a few steps on it (CPU, tiny model), and
each row carries its provenance (settings, judge, models by name, the input's own fields)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.stages import pipeline_hash

from .conftest import drop_batch, exported_pairs, write_config
from .test_pipeline_vllm import MT_BENCH


@pytest.mark.slow
def test_dpo_trainer_trains_on_the_export(workdir: Path, tiny_models: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

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

    policy = tiny_models / "tiny-qwen2"
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(policy),
        args=DPOConfig(
            output_dir=str(workdir / "dpo"),
            max_steps=3,
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
    assert result.global_step == 3
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
