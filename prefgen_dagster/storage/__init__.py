"""The DuckDB file: its tables and migrations (`schema.py`), connections and writes
(`store.py`)."""
