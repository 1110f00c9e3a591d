"""The configs and instructions shipped inside the package: the demo (the real model,
SmolLM2-135M-Instruct, with a tiny random one) and the tiny config that fast engine tests
and benchmarks use (two tiny random-weight models)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_CONFIG = HERE / "demo.yaml"
DEMO_INSTRUCTIONS = HERE / "demo_instructions.jsonl"
SMOLLM2_FOLDER = "models/smollm2-135m-instruct"
TINY_CONFIG = HERE / "tiny.yaml"
