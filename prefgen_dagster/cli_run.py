"""`prefgen run SOURCE`, `prefgen estimate SOURCE` and `prefgen demo`: a batch from a file or
a dataset's split, through every stage in-process, with its estimate first and a summary
after."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prefgen_dagster.bundled import DEMO_CONFIG, DEMO_INSTRUCTIONS, SMOLLM2_FOLDER
from prefgen_dagster.exits import EXIT_HELD_BACK
from prefgen_dagster.llm.heap import frozen_heap

if TYPE_CHECKING:  # imported where used when a command runs: `prefgen --help` stays quick
    import argparse

    from prefgen_dagster.config import PipelineConfig
    from prefgen_dagster.cost import BatchPlan
    from prefgen_dagster.storage.store import Storage

INSTRUCTIONS = (
    "an instruction file (.jsonl, .json, .csv or .parquet; its name is the batch's), or a "
    "dataset: hf://datasets/ORG/NAME[@REVISION], or a folder laid out like a Hub dataset repo "
    "or written by save_to_disk"
)


def add_run_commands(
    add: Callable[..., argparse.ArgumentParser], add_config: Callable[..., None]
) -> None:
    run = add("run", help="run every stage for one instruction file or dataset split")
    run.add_argument("source", help=INSTRUCTIONS)
    _add_dataset_options(run)
    add_config(run)
    run.set_defaults(handler=lambda args: run_batch(args.source, args.config, args.verbose, args))
    cost = add("estimate", help="LLM calls and tokens a file or dataset split would cost")
    cost.add_argument("source", help=INSTRUCTIONS)
    _add_dataset_options(cost)
    add_config(cost)
    cost.set_defaults(handler=estimate_command)
    demo_command = add("demo", help="the real model + a tiny one on the bundled instructions")
    demo_command.add_argument(
        "--workdir", type=Path, default=Path("demo_run"), help="where the demo writes everything"
    )
    demo_command.set_defaults(handler=lambda args: demo(args.workdir))


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """A dataset's config, split and row limit (else as `input.datasets` has them for the
    same name; docs/configuration.md). `--config` is the pipeline's YAML file."""
    parser.add_argument("--subset", help="the dataset's config (the Hub calls it a subset)")
    parser.add_argument("--split", help="the dataset's split (default: train)")
    parser.add_argument("--limit", type=int, help="only the split's first LIMIT rows")


def estimate_command(args: argparse.Namespace) -> int:
    import tempfile

    from prefgen_dagster.config import load_config

    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="prefgen-estimate-") as scratch:
        file = instruction_file(args.source, args, config, Path(scratch))
        text, _ = estimate_file(file, config)
    print(text)
    return 0


def instruction_file(
    source: str | Path, options: argparse.Namespace | None, config: PipelineConfig, inbox: Path
) -> Path:
    """`source` itself when it is a file; for a dataset, its split's batch file in `inbox`
    (`input/datasets.py`), made unless there already."""
    from prefgen_dagster.input.datasets import dataset_input, is_dataset, resolve, snapshot

    if not is_dataset(str(source)):
        return Path(source)
    flags = {
        key: getattr(options, flag, None)
        for key, flag in (("config", "subset"), ("split", "split"), ("limit", "limit"))
    }
    wanted = dataset_input(str(source), flags, config)
    return snapshot(resolve(wanted, Path(config.base_dir)), inbox)


@frozen_heap()
def run_batch(
    source: str | Path,
    config_path: Path,
    verbose: bool = False,
    options: argparse.Namespace | None = None,
) -> int:
    """Drop `source` into the inbox (a dataset split: its batch file, see `instruction_file`),
    run every stage for it, then the export; print a summary. The engines' logs go to
    `engines.log` beside the DuckDB file unless `verbose`."""
    from prefgen_dagster.cli_progress import engine_logs_to, shown_progress
    from prefgen_dagster.defs import report
    from prefgen_dagster.defs.pipeline_run import (
        RunSetup,
        materialize_batch,
        open_instance,
        ui_command,
    )

    config, storage, file = _checked_before_work(source, options, config_path)
    print(f"estimate for {file.name} (before the cache; cached calls cost nothing):")
    text, plan = estimate_file(file, config)
    print(text)
    # The runs take this config and plan as they are: nothing is read or planned twice.
    setup = RunSetup(Path(config_path).resolve(), config, {file.name: plan})
    # A persistent instance: the UI shows the runs, the inbox sensor sees the batch done.
    instance, dagster_home = open_instance(config)
    started = time.perf_counter()
    # Dagster's console stays quiet (its step failures come with long tracebacks); the
    # steps' warnings and errors are printed below, a line each.
    engine_log = storage.path.parent / "engines.log"
    quiet = contextlib.nullcontext() if verbose else engine_logs_to(engine_log)
    with instance:
        with quiet, shown_progress():
            batch, export = materialize_batch(setup, file.name, instance, "CRITICAL")
        elapsed = time.perf_counter() - started
        warnings = report.run_warnings(instance, batch) + (
            report.run_warnings(instance, export) if export else []
        )
    for line in warnings:
        print(f"warning: {line}")
    if report.interrupted(batch) or (export is not None and report.interrupted(export)):
        raise KeyboardInterrupt

    with storage.session():  # one connection for the report's reads
        report.print_summary(batch, export, storage, file.name, elapsed)
        print()
        print(report.label_quality_report(storage, file.name, config))
    dataset = config.resolve(config.paths.export_dir) / "dataset"
    print(f"\nDuckDB file: {storage.path}")
    if not verbose:
        print(f"Engine logs: {engine_log}")
    print(f"Dataset:     {dataset if export is not None else 'not exported by this run'}")
    print(f"Runs:        {dagster_home} (the Dagster instance)")
    print(f"UI:          {ui_command(config_path, dagster_home)}")
    if batch.success and export is not None and export.success:
        return 0
    return EXIT_HELD_BACK if report.held_back_only(batch) else 1


def _checked_before_work(
    source: str | Path, options: argparse.Namespace | None, config_path: Path
) -> tuple[PipelineConfig, Storage, Path]:
    """(config, DuckDB file, the batch's file in the inbox). Before any work, each of these
    stops with one line (see `cli.main`): the config, the file or dataset, a file that would
    replace another file's batch, and a DuckDB file that cannot be locked or opened (which
    would otherwise stop the run late)."""
    from prefgen_dagster.config import load_config
    from prefgen_dagster.input.batches import check_batch_name, place_in_inbox
    from prefgen_dagster.input.read import check_input_file
    from prefgen_dagster.storage.store import Storage

    config = load_config(config_path)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    file = instruction_file(source, options, config, config.resolve(config.paths.inbox_dir))
    check_input_file(file)
    check_batch_name(file)
    return config, storage, place_in_inbox(file, config, storage)


def estimate_file(file: Path, config: PipelineConfig) -> tuple[str, BatchPlan]:
    """The cost table for one instruction file, from its accepted rows and the config, a
    warning for each model whose context the prompts may outgrow, and how many of its pool
    requests the cache already holds; and the batch's plan they come from."""
    from prefgen_dagster.cost import estimate, format_estimate, plan_batch
    from prefgen_dagster.input.read import read_rows
    from prefgen_dagster.input.validate import ingest
    from prefgen_dagster.prompt_fit import context_warnings
    from prefgen_dagster.storage.store import Storage

    fields = config.input.model_dump(
        include={"instruction_field", "system_prompt_field", "conversation_fields"}
    )
    accepted = ingest(read_rows(file), str(file), file.name, **fields).accepted
    batch = plan_batch(accepted, config, file.name)
    lines = [format_estimate(estimate(batch)), *context_warnings(batch)]
    db = config.resolve(config.paths.duckdb_path)
    pool = set(batch.pool_calls)
    if db.exists() and pool:
        cached = Storage(db).cached_calls(list(pool))
        lines.append(
            f"already cached: {len(cached)} of {len(pool)} pool requests (free; the rewrites "
            "and ratings of cached answers are cached too unless their settings changed)"
        )
    return "\n".join(lines), batch


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
