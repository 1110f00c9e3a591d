"""The DuckDB file's tables, its schema version, and the steps from each older version.

Each table's columns are written once, here: the file's DDL and the typed frames the stages
write (`Table.frame`) both come from them; what each column means is in `columns.py`. A
column added here reaches an older file when it is opened (with its default; see
`Storage`), so a new column needs no migration step; `MIGRATIONS` is for the changes that
adding a column cannot express.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from prefgen_dagster.stages import STAGE_TABLES

SCHEMA_VERSION = 6

# DuckDB type -> the polars type of a frame column that is written into it.
_POLARS_TYPES: dict[str, Any] = {
    "VARCHAR": pl.String,
    "INTEGER": pl.Int64,
    "DOUBLE": pl.Float64,
    "BOOLEAN": pl.Boolean,
    "TIMESTAMP": pl.Datetime,
    "FLOAT[]": pl.List(pl.Float32),
}
# Columns the database fills itself when a row is written.
_STAMPED = "DEFAULT current_timestamp"


@dataclass(frozen=True)
class Table:
    """A table: its columns as DuckDB column definitions, and its primary key."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    def ddl(self) -> str:
        body = ",\n    ".join([*self.columns, f"PRIMARY KEY ({', '.join(self.key)})"])
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {body});"

    @property
    def column_types(self) -> dict[str, str]:
        """Each column's DuckDB type (a definition reads "name TYPE ...", as in DDL)."""
        return dict(column.split()[:2] for column in self.columns)

    @property
    def frame_schema(self) -> dict[str, Any]:
        """The polars schema of the rows a stage writes (database-stamped columns left out)."""
        stamped = {column.split()[0] for column in self.columns if _STAMPED in column}
        return {
            name: _POLARS_TYPES[kind]
            for name, kind in self.column_types.items()
            if name not in stamped
        }

    def frame(self, rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
        """Rows as a frame typed like the table. A row without a NOT NULL column that has no
        default is an error here, not a NULL in the file; keys that are not columns (planner
        state) are left out."""
        rows = list(rows)
        required = {
            column.split()[0]
            for column in self.columns
            if "NOT NULL" in column and "DEFAULT" not in column
        }
        for row in rows:
            missing = required - row.keys()
            if missing:
                raise ValueError(f"{self.name}: a row without {sorted(missing)}: {row}")
        return pl.DataFrame(rows, schema=self.frame_schema)


def _table(name: str, key: tuple[str, ...], columns: str) -> Table:
    """A table from its column definitions as written in DDL, separated by commas."""
    return Table(name, tuple(" ".join(c.split()) for c in columns.split(",")), key)


TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        _table(
            "batches",
            ("batch_id",),
            """
            batch_id VARCHAR NOT NULL, source VARCHAR NOT NULL, input_rows INTEGER NOT NULL,
            accepted_rows INTEGER NOT NULL, rejected_rows INTEGER NOT NULL,
            ingested_at TIMESTAMP NOT NULL DEFAULT current_timestamp, pipeline_hash VARCHAR,
            dataset VARCHAR""",
        ),
        # The file `prefgen run` copied into the inbox as a batch's file: another file of
        # the same name may not replace that batch (`input.batches.place_in_inbox`).
        _table(
            "batch_files",
            ("batch_id",),
            """
            batch_id VARCHAR NOT NULL, copied_from VARCHAR NOT NULL,
            copied_at TIMESTAMP NOT NULL DEFAULT current_timestamp""",
        ),
        _table(
            "instructions",
            ("batch_id", "instruction_id"),
            """
            batch_id VARCHAR NOT NULL, instruction_id VARCHAR NOT NULL,
            instruction VARCHAR NOT NULL, system_prompt VARCHAR, source VARCHAR NOT NULL,
            source_row INTEGER NOT NULL, input_fields VARCHAR, history VARCHAR""",
        ),
        _table(
            "rejected_inputs",
            ("batch_id", "source", "source_row"),
            """
            batch_id VARCHAR NOT NULL, source VARCHAR NOT NULL, source_row INTEGER NOT NULL,
            raw VARCHAR, reason VARCHAR NOT NULL""",
        ),
        # A row whose request failed for good has `error` set and no text; its call is in
        # `failed_calls`. `echoed_marker` is a prompt or chat-template marker found in the
        # text (such a text is never chosen; see candidates.sql).
        _table(
            "completions",
            ("batch_id", "completion_id"),
            """
            batch_id VARCHAR NOT NULL, completion_id VARCHAR NOT NULL,
            instruction_id VARCHAR NOT NULL, model VARCHAR NOT NULL, backend VARCHAR NOT NULL,
            pool_member INTEGER NOT NULL DEFAULT 0, system_prompt VARCHAR,
            system_variant INTEGER, sampling VARCHAR NOT NULL, sample_index INTEGER NOT NULL,
            template_version VARCHAR NOT NULL, text VARCHAR, finish_reason VARCHAR,
            prompt_tokens INTEGER, completion_tokens INTEGER, call_id VARCHAR NOT NULL,
            regenerations INTEGER NOT NULL DEFAULT 0, similarity DOUBLE,
            too_similar BOOLEAN NOT NULL DEFAULT false, repetition DOUBLE, embedding FLOAT[],
            echoed_marker VARCHAR, error VARCHAR, plan_key VARCHAR""",
        ),
        _table(
            "evolved_completions",
            ("batch_id", "completion_id"),
            """
            batch_id VARCHAR NOT NULL, completion_id VARCHAR NOT NULL,
            instruction_id VARCHAR NOT NULL, parent_completion_id VARCHAR NOT NULL,
            root_completion_id VARCHAR NOT NULL, model VARCHAR NOT NULL,
            mutation VARCHAR NOT NULL, round INTEGER NOT NULL, sampling VARCHAR NOT NULL,
            template_version VARCHAR NOT NULL, text VARCHAR, finish_reason VARCHAR,
            prompt_tokens INTEGER, completion_tokens INTEGER, call_id VARCHAR NOT NULL,
            repetition DOUBLE, embedding FLOAT[], echoed_marker VARCHAR, error VARCHAR,
            plan_key VARCHAR""",
        ),
        # One row per text shown in one judge request (`shown` texts, this one at `position`):
        # `purpose` says whether it is a candidate (`label`), one side of a canary (`canary`),
        # or a candidate shown again in reversed order to measure position bias
        # (`position_probe`); only `label` rows make pairs.
        _table(
            "ratings",
            ("batch_id", "call_id", "completion_id"),
            """
            batch_id VARCHAR NOT NULL, completion_id VARCHAR NOT NULL,
            instruction_id VARCHAR NOT NULL, judge VARCHAR NOT NULL, aspect VARCHAR NOT NULL,
            judge_order INTEGER NOT NULL, order_name VARCHAR NOT NULL DEFAULT 'original',
            position INTEGER NOT NULL, rating DOUBLE, raw_score DOUBLE,
            not_applicable BOOLEAN NOT NULL DEFAULT false, rationale VARCHAR, raw_output VARCHAR,
            parse_status VARCHAR NOT NULL, attempts INTEGER NOT NULL, call_id VARCHAR NOT NULL,
            judge_settings VARCHAR NOT NULL, purpose VARCHAR NOT NULL DEFAULT 'label',
            mode VARCHAR NOT NULL DEFAULT 'listwise', shown INTEGER NOT NULL DEFAULT 1,
            error VARCHAR, plan_key VARCHAR""",
        ),
        _table(
            "canaries",
            ("batch_id", "canary_id"),
            """
            batch_id VARCHAR NOT NULL, canary_id VARCHAR NOT NULL,
            instruction_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, intact_id VARCHAR NOT NULL,
            corrupted_id VARCHAR NOT NULL, source_completion_id VARCHAR NOT NULL,
            source_model VARCHAR NOT NULL, corrupted_from_id VARCHAR,
            corrupted_text VARCHAR NOT NULL, corrupted_first BOOLEAN NOT NULL""",
        ),
        _table(
            "judge_calibration",
            ("batch_id", "judge"),
            """
            batch_id VARCHAR NOT NULL, judge VARCHAR NOT NULL, mode VARCHAR NOT NULL,
            sets_labels BOOLEAN NOT NULL, canaries INTEGER NOT NULL,
            canaries_correct INTEGER NOT NULL, canaries_tied INTEGER NOT NULL,
            canaries_wrong INTEGER NOT NULL, canaries_unscored INTEGER NOT NULL,
            canary_accuracy DOUBLE, canary_ci_low DOUBLE, canary_ci_high DOUBLE,
            position_effect DOUBLE, position_items INTEGER NOT NULL""",
        ),
        _table(
            "dpo_pairs",
            ("batch_id", "pair_id"),
            """
            batch_id VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, instruction_id VARCHAR NOT NULL,
            chosen_completion_id VARCHAR NOT NULL, rejected_completion_id VARCHAR NOT NULL,
            chosen_model VARCHAR, rejected_model VARCHAR, chosen_origin VARCHAR,
            rejected_origin VARCHAR, chosen_rating DOUBLE, rejected_rating DOUBLE, margin DOUBLE,
            strategy VARCHAR, judge_agreement DOUBLE, settings_hash VARCHAR,
            human_review VARCHAR""",
        ),
        _table(
            "check_results",
            ("batch_id", "check_name"),
            """
            batch_id VARCHAR NOT NULL, check_name VARCHAR NOT NULL, asset VARCHAR NOT NULL,
            severity VARCHAR NOT NULL, blocking BOOLEAN NOT NULL, passed BOOLEAN NOT NULL,
            failing_rows INTEGER NOT NULL, evaluated_at TIMESTAMP NOT NULL, reason VARCHAR""",
        ),
        # Human review (`prefgen_dagster/review/`): the pairs sent to the annotation tool,
        # one task each, with the side the chosen text was shown on ...
        _table(
            "review_tasks",
            ("batch_id", "pair_id"),
            """
            batch_id VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, project_id VARCHAR NOT NULL,
            task_id VARCHAR NOT NULL, chosen_shown VARCHAR NOT NULL, stratum VARCHAR NOT NULL,
            pushed_at TIMESTAMP NOT NULL DEFAULT current_timestamp""",
        ),
        # ... and every annotator's verdict on one, relative to the pair as sent: `choice` is
        # chosen, rejected, tie or both_bad. Verdicts are inputs, like instructions.
        _table(
            "human_verdicts",
            ("batch_id", "pair_id", "annotator"),
            """
            batch_id VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, annotator VARCHAR NOT NULL,
            choice VARCHAR NOT NULL, chosen_shown VARCHAR NOT NULL, task_id VARCHAR NOT NULL,
            annotated_at TIMESTAMP NOT NULL,
            pulled_at TIMESTAMP NOT NULL DEFAULT current_timestamp""",
        ),
        _table(
            "llm_calls",
            ("call_id",),
            """
            call_id VARCHAR NOT NULL, model VARCHAR NOT NULL, request VARCHAR NOT NULL,
            response VARCHAR, finish_reason VARCHAR, prompt_tokens INTEGER,
            completion_tokens INTEGER, latency_s DOUBLE, run_id VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp""",
        ),
        # Requests that still failed after the engine's retries; `runs` counts the runs that
        # tried one and failed (at `engine.max_failed_runs` it is not asked again until
        # `prefgen retry-failed`). A call answered later is removed.
        _table(
            "failed_calls",
            ("call_id",),
            """
            call_id VARCHAR NOT NULL, model VARCHAR NOT NULL, error VARCHAR NOT NULL,
            attempts INTEGER, runs INTEGER NOT NULL DEFAULT 1,
            failed_at TIMESTAMP NOT NULL DEFAULT current_timestamp""",
        ),
    )
}

SCHEMA = "\n".join(
    ["CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);"]
    + [table.ddl() for table in TABLES.values()]
)


# Statements that take a file from schema version n to n + 1. They keep every row, above all
# the paid-for `llm_calls`; rows written before get the new columns' defaults, and re-running
# a batch rewrites its rows from the cache for free.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE completions ADD COLUMN pool_member INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE completions ADD COLUMN system_variant INTEGER",
        "ALTER TABLE completions ADD COLUMN regenerations INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE completions ADD COLUMN similarity DOUBLE",
        "ALTER TABLE completions ADD COLUMN too_similar BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE ratings ADD COLUMN order_name VARCHAR NOT NULL DEFAULT 'original'",
        "ALTER TABLE ratings ADD COLUMN not_applicable BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE dpo_pairs ADD COLUMN judge_agreement DOUBLE",
    ),
    # Some version-2 files were written before the token budget added `run_id`.
    2: ("ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS run_id VARCHAR",),
    # Judge modes, canaries and position probes: a text may now be in several requests of
    # one judge and aspect (pairwise), so a rating row is keyed by its request.
    3: (
        "ALTER TABLE completions ADD COLUMN repetition DOUBLE",
        "ALTER TABLE completions ADD COLUMN embedding FLOAT[]",
        "ALTER TABLE evolved_completions ADD COLUMN repetition DOUBLE",
        "ALTER TABLE evolved_completions ADD COLUMN embedding FLOAT[]",
        "ALTER TABLE check_results ADD COLUMN reason VARCHAR",
        "ALTER TABLE ratings RENAME TO ratings_v3",
        TABLES["ratings"].ddl(),
        "INSERT INTO ratings BY NAME SELECT *, "
        "count(*) OVER (PARTITION BY batch_id, call_id) AS shown FROM ratings_v3",
        "DROP TABLE ratings_v3",
    ),
    # Each Python stage's asset is named after its main table (`stages.Stage`): the checks
    # recorded under the old names are the new assets'.
    4: (
        "UPDATE check_results SET asset = 'instructions' WHERE asset = 'raw_instructions'",
        "UPDATE check_results SET asset = 'completions' WHERE asset = 'pooled_completions'",
    ),
    5: ("ALTER TABLE ratings ALTER COLUMN rating TYPE DOUBLE",),  # a reward model's: 1-5
}


# Every table that holds rows per batch: the stages' tables and the final pairs (the other
# SQL models' tables are created from their first rows).
PARTITIONED_TABLES = (*STAGE_TABLES, "dpo_pairs")
