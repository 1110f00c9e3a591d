"""`prefgen review push BATCH` and `prefgen review pull [BATCH]`: the CLI of a review round."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from prefgen_dagster.config import load_config
from prefgen_dagster.exits import EXIT_HELD_BACK
from prefgen_dagster.review.client import client_from_env
from prefgen_dagster.review.round import pull, push, reviewed_batches
from prefgen_dagster.storage.store import Storage


def add_review_commands(
    add: Callable[..., argparse.ArgumentParser], add_config: Callable[..., None]
) -> None:
    review = add("review", help="human review: send a batch's sample, read the verdicts back")
    actions = review.add_subparsers(dest="review_command", required=True, help="push or pull")
    send = actions.add_parser("push", help="send a blind, stratified sample of a batch's pairs")
    send.add_argument("batch", help="the batch (its file's name, e.g. base.jsonl)")
    add_config(send)
    read = actions.add_parser("pull", help="store the verdicts given so far (every annotator's)")
    read.add_argument("batch", nargs="?", help="one batch (default: every batch sent)")
    add_config(read)
    review.set_defaults(handler=review_command)


def review_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, check_environment=False)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    client = client_from_env(config.review.url, config.review.token_env)
    if args.review_command == "push":
        print(push(config, storage, client, args.batch))
        return 0
    from prefgen_dagster.defs.pipeline_run import RunSetup, materialize_verdicts, open_instance
    from prefgen_dagster.defs.report import check_line, label_quality_report

    held = False
    setup = RunSetup(Path(args.config).resolve(), config)
    instance, _ = open_instance(config)
    with instance:
        for batch_id in [args.batch] if args.batch else reviewed_batches(storage):
            print(pull(storage, client, batch_id))
            # The verdicts are the batch's input: its pair models, checks and the export
            # follow (no LLM stage is after them, so no engine starts).
            batch, export = materialize_verdicts(setup, batch_id, instance, "CRITICAL")
            for evaluation in batch.get_asset_check_evaluations():
                print(check_line(evaluation))
            held |= not batch.success
            print(label_quality_report(storage, batch_id, config))
    return EXIT_HELD_BACK if held else 0
