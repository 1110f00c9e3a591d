"""A deterministic tiny random-weight reward model for offline tests: the tiny Qwen2 chat
model's body with a one-output score head (`Qwen2ForSequenceClassification`, num_labels 1),
the shape of real reward models such as Skywork-Reward. Its scores are noise by construction:
it exercises the engine path (vLLM's pooling runner), not judgement."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2ForSequenceClassification

from prefgen_dagster.local_models.tiny import MARKER, VERSION, make_tiny_model


def make_tiny_reward_model(out_dir: Path | str, seed: int = 0) -> Path:
    """Build (or reuse) the tiny reward model in `out_dir`; the same seed gives the same
    files. Returns the model directory."""
    out = Path(out_dir)
    marker = {"arch": "qwen2", "kind": "reward", "seed": seed, "version": VERSION}
    if (out / MARKER).exists() and json.loads((out / MARKER).read_text()) == marker:
        return out
    with tempfile.TemporaryDirectory(prefix="prefgen-tiny-reward-") as scratch:
        base = make_tiny_model(Path(scratch) / "base", arch="qwen2", seed=seed)
        config = AutoConfig.from_pretrained(base)
        config.architectures = ["Qwen2ForSequenceClassification"]
        config.num_labels = 1
        config.pad_token_id = config.eos_token_id
        torch.manual_seed(seed)
        model = Qwen2ForSequenceClassification(config)
        model.model.load_state_dict(AutoModelForCausalLM.from_pretrained(base).model.state_dict())
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).unlink(missing_ok=True)
        model.save_pretrained(out)
        for file in base.glob("tokenizer*"):
            shutil.copyfile(file, out / file.name)
    (out / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="utf-8")
    return out
