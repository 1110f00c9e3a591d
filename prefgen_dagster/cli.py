"""`prefgen`: one-shot runs without the Dagster UI (same assets, run in-process)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from prefgen_dagster.exits import EXIT_INTERRUPTED, EXIT_USAGE, INTERRUPTED


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

    from prefgen_dagster.cli_run import add_run_commands

    add_run_commands(add, add_config)  # `prefgen run|estimate FILE`, `prefgen demo`

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

    from prefgen_dagster.local_models.commands import add_model_commands

    add_model_commands(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from prefgen_dagster.config import ConfigError
    from prefgen_dagster.export.hub import MissingToken
    from prefgen_dagster.export.story import UnknownId
    from prefgen_dagster.input.read import InputFileError
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
    if args.command == "inspect":
        from prefgen_dagster.config import load_config
        from prefgen_dagster.export.story import story
        from prefgen_dagster.storage.store import Storage

        config = load_config(args.config, check_environment=False)
        print(story(Storage(config.resolve(config.paths.duckdb_path)), args.id))
        return 0
    if args.command == "push":
        from prefgen_dagster.config import load_config
        from prefgen_dagster.export.hub import publish

        config = load_config(args.config, check_environment=False)
        export_dir = config.resolve(config.paths.export_dir)
        token = os.environ.get("HF_TOKEN")  # passed on to the Hub client, never printed
        print(publish(export_dir, args.repo_id, args.dry_run, args.private, token))
        return 0
    if hasattr(args, "handler"):  # commands that bring their own (run, review, make-*, ...)
        return args.handler(args)
    if args.command == "retry-failed":
        from prefgen_dagster.config import load_config
        from prefgen_dagster.storage.store import Storage

        config = load_config(args.config)
        count = Storage(config.resolve(config.paths.duckdb_path)).retry_failures()
        print(f"{count} failed requests will be asked again by the next run of their batch")
        return 0
    raise AssertionError(f"no handler for {args.command}")


if __name__ == "__main__":
    sys.exit(main())
