"""The full asset graph on vLLM offline with the tiny models, on a real DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from prefgen_dagster.defs.assets import LATER_PROMPTS_FIT as FITS
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.storage.schema import PARTITIONED_TABLES

from .conftest import drop_batch, exported_pairs, write_config

MT_BENCH = Path(__file__).resolve().parents[3] / "shared" / "data" / "mt-bench-80.jsonl"
LLM_ASSETS = ("completions", "evolved_completions", "ratings")
# Every batch table but `batches`, whose ingestion time changes on each run.
TABLES = tuple(t for t in PARTITIONED_TABLES if t != "batches")


def mt_bench_lines(count: int) -> list[str]:
    rows = [json.loads(line) for line in MT_BENCH.read_text().splitlines()[:count]]
    return [json.dumps({"instruction": row["instruction"]}) for row in rows]


def bad_lines(first_instruction: str) -> list[str]:
    return [
        "",  # blank line
        "{this is not json",
        json.dumps({"prompt": "no instruction field"}),
        json.dumps({"instruction": "   "}),
        json.dumps({"instruction": first_instruction}),  # duplicate
    ]


def table(db: Path, name: str, batch_id: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            f"SELECT * FROM {name} WHERE batch_id = ? ORDER BY ALL", [batch_id]
        ).fetchall()


def engine_calls(
    result: dg.ExecuteInProcessResult, asset: str, figure: str = "llm_engine_calls"
) -> int:
    """A count from the asset's metadata (by default its engine calls)."""
    [event] = result.asset_materializations_for_node(asset)
    return event.metadata[figure].value


@pytest.mark.slow
def test_full_graph_on_vllm_then_rerun_is_free(workdir: Path, tiny_models: Path) -> None:
    config_path = write_config(workdir, tiny_models)
    good = mt_bench_lines(4)
    lines = good[:2] + bad_lines(json.loads(good[0])["instruction"]) + good[2:]
    drop_batch(workdir, "mt-bench.jsonl", lines)
    db = workdir / "data" / "prefgen.duckdb"

    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(config_path, "mt-bench.jsonl", instance)
        assert batch.success and export is not None and export.success

        # Every input line is accounted for: 4 accepted, one rejected row per bad line.
        rejected = table(db, "rejected_inputs", "mt-bench.jsonl")
        reasons = {row[2]: row[4] for row in rejected}
        assert reasons == {
            3: "blank line",
            4: reasons[4],
            5: "missing field 'instruction' or 'messages' or 'conversations'; the row has 'prompt'",
            6: "field 'instruction' is empty",
            7: "duplicate of row 1",
        }
        assert reasons[4].startswith("not valid JSON")
        [raw_event] = batch.asset_materializations_for_node("instructions")
        assert raw_event.metadata["input_rows"].value == len(lines) == 4 + len(rejected)

        # Demo pool: 2 models x 2 samples; one EvolQuality round; all 8 judged together.
        assert len(table(db, "instructions", "mt-bench.jsonl")) == 4
        assert len(table(db, "completions", "mt-bench.jsonl")) == 16
        assert len(table(db, "evolved_completions", "mt-bench.jsonl")) == 16
        ratings = table(db, "ratings", "mt-bench.jsonl")
        assert len(ratings) == 32
        with duckdb.connect(str(db), read_only=True) as con:
            models = {
                m for (m,) in con.execute("SELECT DISTINCT model FROM completions").fetchall()
            }
            bad_ratings = con.execute(
                "SELECT count(*) FROM ratings WHERE parse_status = 'ok' "
                "AND (rating NOT BETWEEN 1 AND 5 OR rationale IS NULL)"
            ).fetchall()[0][0]
            pairs = con.execute(
                "SELECT chosen_rating, rejected_rating, margin, chosen_model, rejected_model "
                "FROM dpo_pairs"
            ).fetchall()
            positions = con.execute(
                "SELECT instruction_id, list(position ORDER BY position) FROM ratings GROUP BY 1"
            ).fetchall()
        assert len(models) == 2
        # One engine per model per run: tiny-llama generates and judges, tiny-qwen2 generates
        # and rewrites; both start in the first stage and neither starts again.
        starts = {asset: engine_calls(batch, asset, "engine_starts") for asset in LLM_ASSETS}
        assert starts == {"completions": 2, "evolved_completions": 0, "ratings": 0}
        assert bad_ratings == 0
        assert all(p == list(range(1, 9)) for _, p in positions)
        assert 1 <= len(pairs) <= 4
        assert all(c > r and abs(m - (c - r)) < 1e-9 for c, r, m, *_ in pairs)

        checks = {e.check_name: e for e in batch.get_asset_check_evaluations()}
        # Every SQL check, and the one written in Python (later_prompts_fit).
        assert set(checks) == {check.name for check in load_project().checks} | {FITS}
        assert len(checks) == 12
        assert checks["pair_integrity"].passed
        assert checks["input_reconciliation"].passed

        dataset = exported_pairs(workdir)
        [export_event] = export.asset_materializations_for_node("preference_dataset")
        # dpo_pairs holds the final pairs: the export writes them as they are, and what the
        # pair rule dropped is counted from candidate_pairs.
        assert len(dataset) == len(pairs)
        with duckdb.connect(str(db), read_only=True) as con:
            [(dropped,)] = con.execute(
                "SELECT count(*) FROM candidate_pairs WHERE dropped_because IS NOT NULL"
            ).fetchall()
        assert export_event.metadata["pairs_dropped"].value == dropped
        if len(dataset):
            row = dataset[0]
            assert [m["role"] for m in row["prompt"]] == ["user"]
            assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
            assert row["score_chosen"] - row["score_rejected"] >= 1.0
            assert row["chosen_model"] in {"tiny-qwen2", "tiny-llama"}  # config names, no paths

        before = {name: table(db, name, "mt-bench.jsonl") for name in TABLES}
        with duckdb.connect(str(db), read_only=True) as con:
            cached = con.execute("SELECT count(*) FROM llm_calls").fetchall()[0][0]

        # Materializing the same partition again: zero engine calls, identical rows.
        again, _ = materialize_batch(config_path, "mt-bench.jsonl", instance)
        assert again.success
        for figure in ("llm_engine_calls", "engine_starts"):
            counts = {asset: engine_calls(again, asset, figure) for asset in LLM_ASSETS}
            assert counts == dict.fromkeys(LLM_ASSETS, 0)
        assert {name: table(db, name, "mt-bench.jsonl") for name in TABLES} == before
        # Same rows, same data versions: Dagster sees nothing downstream as changed.
        for asset in ("instructions", *LLM_ASSETS, "dpo_pairs"):
            [old] = batch.asset_materializations_for_node(asset)
            [new] = again.asset_materializations_for_node(asset)
            assert old.tags["dagster/data_version"] == new.tags["dagster/data_version"]
        with duckdb.connect(str(db), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM llm_calls").fetchall()[0][0] == cached
