"""Pure prompt builders: text in, chat messages out. No engine, no Dagster."""
