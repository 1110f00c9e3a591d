"""`prefgen`: one-shot runs without the Dagster UI (same assets, run in-process)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parent / "demo.yaml"
DEMO_INSTRUCTIONS = Path(__file__).resolve().parent / "demo_instructions.jsonl"
# The demo's model pool: (folder under the config's folder, architecture, seed).
DEMO_MODELS = (("models/tiny-qwen2", "qwen2", 1), ("models/tiny-llama", "llama", 2))


def run_batch(file: Path, config_path: Path) -> int:
    """Drop `file` into the inbox, run every stage for it, then the export; print a summary."""
    import dagster as dg

    from prefgen_dagster.config import load_config
    from prefgen_dagster.partitions import is_valid_batch_name
    from prefgen_dagster.pipeline_run import materialize_batch
    from prefgen_dagster.storage import Storage

    config = load_config(config_path)
    if not is_valid_batch_name(file.name):
        raise SystemExit(f"{file}: not usable as a batch name (plain name, .jsonl/.csv/.parquet)")
    inbox = config.resolve(config.paths.inbox_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / file.name
    if file.resolve() != target.resolve():
        shutil.copyfile(file, target)

    print(f"estimate for {file.name} (before the cache; cached calls cost nothing):")
    print(estimate_file(target, config_path))
    # With DAGSTER_HOME set the runs show up in that instance's UI; else they are ephemeral.
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    started = time.perf_counter()
    batch, export = materialize_batch(
        config_path, file.name, instance or dg.DagsterInstance.ephemeral(), log_level="WARNING"
    )
    elapsed = time.perf_counter() - started

    storage = Storage(config.resolve(config.paths.duckdb_path))
    _print_summary(batch, export, storage, file.name, elapsed)
    print(f"DuckDB file: {storage.path}")
    print(f"Dataset:     {config.resolve(config.paths.export_dir) / 'dataset'}")
    return 0 if batch.success and export is not None and export.success else 1


def estimate_file(file: Path, config_path: Path) -> str:
    """The cost table for one instruction file, from its accepted rows and the config, and
    a warning for each model whose context the prompts may outgrow."""
    from prefgen_dagster.config import load_config
    from prefgen_dagster.cost import context_warnings, estimate, format_estimate
    from prefgen_dagster.ingest import ingest, read_rows

    config = load_config(config_path)
    accepted = ingest(read_rows(file), str(file), file.name).accepted
    table = format_estimate(estimate(accepted, config, file.name))
    return "\n".join([table, *context_warnings(accepted, config, file.name)])


def _print_summary(batch, export, storage, batch_id: str, elapsed: float) -> None:
    counts = storage.table_counts(batch_id)
    stage_tables = [
        ("raw_instructions", "instructions"),
        ("raw_instructions", "rejected_inputs"),
        ("pooled_completions", "completions"),
        ("evolved_completions", "evolved_completions"),
        ("ratings", "ratings"),
        ("dpo_pairs", "dpo_pairs"),
    ]
    print(f"\nbatch {batch_id}: {'succeeded' if batch.success else 'FAILED'} in {elapsed:.1f} s")
    print(f"{'stage':<22}{'table':<22}{'rows':>8}{'engine calls':>14}{'cache hits':>12}")
    for stage, table in stage_tables:
        meta = _materialization_metadata(batch, stage)
        calls = meta.get("llm_engine_calls", "")
        hits = meta.get("llm_cache_hits", "")
        print(f"{stage:<22}{table:<22}{counts[table]:>8}{calls!s:>14}{hits!s:>12}")
    for evaluation in batch.get_asset_check_evaluations():
        status = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        rows = evaluation.metadata["failing_rows"].value
        print(f"check {evaluation.check_name:<28}{status:<16} offending rows: {rows}")
    for event in batch.all_events:
        if event.event_type_value == "STEP_FAILURE":
            message = step_error_message(event.event_specific_data.error)
            print(f"step {event.step_key} failed: {message}")
    if export is not None:
        meta = _materialization_metadata(export, "preference_dataset")
        print(f"preference_dataset: {meta.get('dagster/row_count', 0)} pairs exported")


def step_error_message(error) -> str:
    """The step's own error message, not Dagster's "error occurred while executing op"."""
    while error.cls_name and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error.message.strip()


def _materialization_metadata(result, asset_name: str) -> dict:
    events = result.asset_materializations_for_node(asset_name)
    if not events:
        return {}
    return {key: getattr(value, "value", value) for key, value in events[-1].metadata.items()}


def make_demo_models(base: Path) -> None:
    from prefgen_dagster.tiny_model import make_tiny_model

    for folder, arch, seed in DEMO_MODELS:
        make_tiny_model(base / folder, arch=arch, seed=seed)


def demo(workdir: Path) -> int:
    """Build the tiny models if missing, then run the bundled instructions end to end."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prefgen.yaml"
    if not config_path.exists():
        shutil.copyfile(DEMO_CONFIG, config_path)
    make_demo_models(workdir)
    return run_batch(DEMO_INSTRUCTIONS, config_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prefgen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run every stage for one instruction file")
    run.add_argument("file", type=Path)
    run.add_argument("--config", type=Path, default=Path("prefgen.yaml"))

    cost = commands.add_parser("estimate", help="LLM calls and tokens a file would cost")
    cost.add_argument("file", type=Path)
    cost.add_argument("--config", type=Path, default=Path("prefgen.yaml"))

    demo_cmd = commands.add_parser("demo", help="tiny local models + bundled instructions")
    demo_cmd.add_argument("--workdir", type=Path, default=Path("demo_run"))

    tiny = commands.add_parser("make-tiny-model", help="build a random-weight chat model")
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--arch", choices=("qwen2", "llama"), default="qwen2")
    tiny.add_argument("--seed", type=int, default=0)

    args = parser.parse_args(argv)
    if args.command == "run":
        return run_batch(args.file, args.config)
    if args.command == "estimate":
        print(estimate_file(args.file, args.config))
        return 0
    if args.command == "demo":
        return demo(args.workdir)
    from prefgen_dagster.tiny_model import make_tiny_model

    print(make_tiny_model(args.dir, arch=args.arch, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
