"""`prefgen`'s exit codes, for every command: the batch ran but its blocking checks held it
back; a config, input or storage problem stopped it before any work (one line on stderr,
see `cli.main`); interrupted."""

EXIT_HELD_BACK = 3
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C
# What `prefgen` says when it is interrupted (Ctrl-C, SIGTERM).
INTERRUPTED = (
    "prefgen: interrupted; every answer that arrived is saved in the DuckDB file. Run the same "
    "command again to go on: answered prompts are not asked again."
)
