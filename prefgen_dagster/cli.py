"""`prefgen`: one-shot runs without the Dagster UI (same assets, run in-process)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prefgen_dagster.exits import EXIT_HELD_BACK, EXIT_INTERRUPTED, EXIT_USAGE
from prefgen_dagster.llm.heap import frozen_heap

HERE = Path(__file__).resolve().parent
# The demo: a real model (SmolLM2-135M-Instruct) and a tiny random one.
DEMO_CONFIG = HERE / "demo.yaml"
DEMO_INSTRUCTIONS = HERE / "demo_instructions.jsonl"
SMOLLM2_FOLDER = "models/smollm2-135m-instruct"
# Fast engine tests and benchmarks: two tiny random-weight models.
TINY_CONFIG = HERE / "tiny.yaml"
INTERRUPTED = (
    "prefgen: interrupted; every answer that arrived is saved in the DuckDB file. Run the same "
    "command again to go on: answered prompts are not asked again."
)


@frozen_heap()
def run_batch(file: Path, config_path: Path, verbose: bool = False) -> int:
    """Drop `file` into the inbox, run every stage for it, then the export; print a summary.
    The engines' logs go to `engines.log` beside the DuckDB file unless `verbose`."""
    from prefgen_dagster.cli_progress import engine_logs_to, shown_progress
    from prefgen_dagster.config import load_config
    from prefgen_dagster.defs.pipeline_run import materialize_batch, open_instance, ui_command
    from prefgen_dagster.defs.report import (
        held_back_only,
        interrupted,
        label_quality_report,
        print_summary,
        run_warnings,
    )
    from prefgen_dagster.ingest.batches import is_valid_batch_name, place_in_inbox
    from prefgen_dagster.ingest.read import InputFileError, check_input_file
    from prefgen_dagster.storage.store import Storage

    # Before any work, each of these stops with one line (see `main`): the config, the
    # file, a file that would replace another file's batch, and a DuckDB file that cannot be
    # locked or opened (which would otherwise stop the run late).
    config = load_config(config_path)
    check_input_file(file)
    if not is_valid_batch_name(file.name):
        raise InputFileError(
            f"{file}: not usable as a batch name (a plain file name: no leading dot, no "
            "backslash, comma, bracket or control character)"
        )
    storage = Storage(config.resolve(config.paths.duckdb_path))
    target = place_in_inbox(file, config, storage)

    print(f"estimate for {file.name} (before the cache; cached calls cost nothing):")
    print(estimate_file(target, config_path))
    # A persistent instance: the UI shows the runs, the inbox sensor sees the batch done.
    instance, dagster_home = open_instance(config)
    started = time.perf_counter()
    # Dagster's console stays quiet (its step failures come with long tracebacks); the
    # steps' warnings and errors are printed below, a line each.
    engine_log = storage.path.parent / "engines.log"
    quiet = contextlib.nullcontext() if verbose else engine_logs_to(engine_log)
    with instance:
        with quiet, shown_progress():
            batch, export = materialize_batch(config_path, file.name, instance, "CRITICAL")
        elapsed = time.perf_counter() - started
        warnings = run_warnings(instance, batch) + (
            run_warnings(instance, export) if export else []
        )
    for line in warnings:
        print(f"warning: {line}")
    if interrupted(batch) or (export is not None and interrupted(export)):
        raise KeyboardInterrupt

    with storage.session():  # one connection for the report's reads
        print_summary(batch, export, storage, file.name, elapsed)
        print()
        print(label_quality_report(storage, file.name, config))
    print(f"\nDuckDB file: {storage.path}")
    if not verbose:
        print(f"Engine logs: {engine_log}")
    dataset = config.resolve(config.paths.export_dir) / "dataset"
    print(f"Dataset:     {dataset if export is not None else 'not exported by this run'}")
    print(f"Runs:        {dagster_home} (the Dagster instance)")
    print(f"UI:          {ui_command(config_path, dagster_home)}")
    if batch.success and export is not None and export.success:
        return 0
    return EXIT_HELD_BACK if held_back_only(batch) else 1


def estimate_file(file: Path, config_path: Path) -> str:
    """The cost table for one instruction file, from its accepted rows and the config, a
    warning for each model whose context the prompts may outgrow, and how many of its pool
    requests the cache already holds."""
    from prefgen_dagster.config import load_config
    from prefgen_dagster.cost import context_warnings, estimate, format_estimate, plan_batch
    from prefgen_dagster.ingest.read import read_rows
    from prefgen_dagster.ingest.validate import ingest
    from prefgen_dagster.storage.store import Storage

    config = load_config(config_path)
    fields = config.input.model_dump(include={"instruction_field", "system_prompt_field"})
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
    return "\n".join(lines)


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


def build_parser() -> argparse.ArgumentParser:
    """Every command and argument, each with its help text."""
    parser = argparse.ArgumentParser(prog="prefgen", description=__doc__)
    verbose_help = "show the engines' logs, and the traceback of a config, input or storage error"
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # Also accepted after the command; SUPPRESS keeps it from undoing one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(commands.add_parser, parents=[common])

    instructions = "an instruction file (.jsonl, .json, .csv or .parquet); its name is the batch's"

    run = add("run", help="run every stage for one instruction file")
    run.add_argument("file", type=Path, help=instructions)
    add_config(run)

    cost = add("estimate", help="LLM calls and tokens a file would cost")
    cost.add_argument("file", type=Path, help=instructions)
    add_config(cost)

    inspect = add("inspect", help="one pair's whole story, from instruction to pairing")
    inspect.add_argument("id", help="a pair id, an instruction id or a completion id")
    add_config(inspect)

    push = add("push", help="publish the export to the Hugging Face Hub as a dataset repo")
    push.add_argument("repo_id", help="the dataset repo, e.g. your-name/my-pairs")
    push.add_argument(
        "--dry-run",
        type=Path,
        metavar="DIR",
        help="write the folder that would be uploaded to DIR instead of uploading",
    )
    push.add_argument("--private", action="store_true", help="create the repo as private")
    add_config(push)

    from prefgen_dagster.cli_review import add_review_commands

    add_review_commands(add, add_config)  # `prefgen review push|pull`

    retry = add(
        "retry-failed",
        help="let requests given up after engine.max_failed_runs failed runs be asked again",
    )
    add_config(retry)

    demo_cmd = add("demo", help="the real model + a tiny one on the bundled instructions")
    demo_cmd.add_argument(
        "--workdir", type=Path, default=Path("demo_run"), help="where the demo writes everything"
    )

    from prefgen_dagster.local_models.commands import add_model_commands

    add_model_commands(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from prefgen_dagster.config import ConfigError
    from prefgen_dagster.export.card import MissingToken
    from prefgen_dagster.export.story import UnknownId
    from prefgen_dagster.ingest.read import InputFileError
    from prefgen_dagster.review.client import ReviewProblem
    from prefgen_dagster.storage.store import StorageUnavailable

    # Problems the user fixes: one line, exit 2.
    usage = (ConfigError, InputFileError, StorageUnavailable, FileNotFoundError, ReviewProblem)
    try:
        with _sigterm_as_interrupt():
            return _command(args)
    except (*usage, UnknownId, MissingToken) as err:
        if args.verbose:
            raise
        print(f"prefgen: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.verbose:
            raise
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED


def add_config(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config",
        type=Path,
        default=Path("prefgen.yaml"),
        help="the pipeline YAML file (default: ./prefgen.yaml)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefgen")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (inside a run Dagster maps it so, too)."""
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _one_line(err: Exception) -> str:
    """The error's message on one line; an OSError as `<file>: <reason>`."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split())


def _command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run_batch(args.file, args.config, args.verbose)
    if args.command == "estimate":
        print(estimate_file(args.file, args.config))
        return 0
    if args.command == "inspect":
        from prefgen_dagster.config import load_config
        from prefgen_dagster.export.story import story
        from prefgen_dagster.storage.store import Storage

        config = load_config(args.config, check_environment=False)
        print(story(Storage(config.resolve(config.paths.duckdb_path)), args.id))
        return 0
    if args.command == "push":
        from prefgen_dagster.config import load_config
        from prefgen_dagster.export.card import publish

        config = load_config(args.config, check_environment=False)
        export_dir = config.resolve(config.paths.export_dir)
        token = os.environ.get("HF_TOKEN")  # passed on to the Hub client, never printed
        print(publish(export_dir, args.repo_id, args.dry_run, args.private, token))
        return 0
    if hasattr(args, "handler"):  # commands that bring their own (review, make-*)
        return args.handler(args)
    if args.command == "retry-failed":
        from prefgen_dagster.config import load_config
        from prefgen_dagster.storage.store import Storage

        config = load_config(args.config)
        count = Storage(config.resolve(config.paths.duckdb_path)).retry_failures()
        print(f"{count} failed requests will be asked again by the next run of their batch")
        return 0
    if args.command == "demo":
        return demo(args.workdir)
    raise AssertionError(f"no handler for {args.command}")


if __name__ == "__main__":
    sys.exit(main())
