"""Ingest: read instruction files, validate and deduplicate the rows, check that they fit the
pool's context, and name the batch."""
