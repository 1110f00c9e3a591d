"""The same graph against a real OpenAI-compatible vLLM server started by the test."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from prefgen_dagster.defs.pipeline_run import materialize_batch

from .conftest import drop_batch, write_config
from .servers import vllm_server
from .test_pipeline_vllm import LLM_ASSETS, engine_calls, mt_bench_lines


@pytest.mark.slow
def test_full_graph_over_http(workdir: Path, tiny_models: Path) -> None:
    with vllm_server(tiny_models / "tiny-qwen2", "tiny-qwen2", workdir / "server.log") as url:
        server = {"path": "tiny-qwen2", "backend": "openai", "base_urls": [url], "max_retries": 2}
        sampling = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 32}
        config_path = write_config(
            workdir,
            tiny_models,
            models={"server": server},
            generation={
                "seed": 3,
                "pool": [
                    {"model": "server", "num_completions": 2, "sampling": sampling},
                    {
                        "model": "server",
                        "system_prompt": "Answer briefly.",
                        "sampling": {**sampling, "temperature": 0.7},
                    },
                ],
            },
            evol_quality={"model": "server", "sampling": sampling},
            judge={"model": "server", "rationale_max_chars": 60},
        )
        drop_batch(workdir, "over-http.jsonl", mt_bench_lines(3))

        with dg.instance_for_test() as instance:
            batch, export = materialize_batch(config_path, "over-http.jsonl", instance)
            assert batch.success and export is not None and export.success
            # 3 instructions x (2 + 1) pooled, as many evolved, one judge call each.
            assert engine_calls(batch, "completions") == 9
            assert engine_calls(batch, "evolved_completions") == 9
            assert engine_calls(batch, "ratings") >= 3

            db = workdir / "data" / "prefgen.duckdb"
            with duckdb.connect(str(db), read_only=True) as con:
                backends = con.execute("SELECT DISTINCT backend FROM completions").fetchall()
                statuses = con.execute(
                    "SELECT parse_status, count(*) FROM ratings GROUP BY 1"
                ).fetchall()
                requests = con.execute("SELECT request FROM llm_calls").fetchall()
            assert backends == [("openai",)]
            assert dict(statuses).get("ok", 0) == 18
            assert all(json.loads(r)["model"] == "tiny-qwen2" for (r,) in requests)

            again, _ = materialize_batch(config_path, "over-http.jsonl", instance)
            assert [engine_calls(again, asset) for asset in LLM_ASSETS] == [0, 0, 0]
