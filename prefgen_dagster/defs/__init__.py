"""The Dagster layer, the only one that imports dagster: assets, checks, automation, resources,
metadata, definitions."""
