"""`prefgen`'s exit codes, for every command: the batch ran but its blocking checks held it
back; a config, input or storage problem stopped it before any work (one line on stderr,
see `cli.main`); interrupted."""

EXIT_HELD_BACK = 3
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C
