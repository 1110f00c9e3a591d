"""prefgen: preference datasets for DPO as Dagster assets on DuckDB."""
