"""Label quality on a real model: SmolLM2-135M-Instruct answers, rewrites and judges; the judge
is measured on canaries and for position bias; a judge that rates by position is held back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from prefgen_dagster.bundled import DEMO_INSTRUCTIONS
from prefgen_dagster.defs.pipeline_run import materialize_batch, materialize_export
from prefgen_dagster.exits import EXIT_HELD_BACK
from tests.conftest import CLEAN_ENV

from .conftest import DemoRun
from .servers import position_judge_server
from .test_pipeline_vllm import LLM_ASSETS, engine_calls

BATCH = DEMO_INSTRUCTIONS.name
GATES = ("judge_canary_accuracy", "judge_position_bias")


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def demo_batch_run(home: Path) -> tuple[dict, dict[str, bool]]:
    """The metadata of the demo's `ratings` materialization (as the UI shows it) and the
    verdicts of its batch run's checks, read from the demo's Dagster instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("ratings"))
        assert event is not None and event.asset_materialization is not None
        metadata = {key: value.value for key, value in event.asset_materialization.metadata.items()}
        evaluations = [
            entry.dagster_event.event_specific_data
            for entry in instance.all_logs(
                event.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        ]
    verdicts = {evaluation.check_name: evaluation.passed for evaluation in evaluations}
    return metadata, verdicts


@pytest.mark.slow
def test_real_model_judge_is_measured_and_a_position_judge_is_held_back(
    workdir: Path, demo_run: DemoRun
) -> None:
    """On the demo's finished run (SmolLM2 answers, rewrites and judges the bundled
    instructions), then on a copy of it judged again by a judge that rates by position."""
    assert demo_run.result.returncode == 0, demo_run.result.stderr[-3000:]
    config_path = demo_run.copy_to(workdir)
    db = workdir / "data" / "prefgen.duckdb"
    instructions = len(DEMO_INSTRUCTIONS.read_text().splitlines())

    # Canaries were built from the batch, judged like candidates, and stored. How many
    # depends on how many real answers finished within max_tokens, which differs from one
    # CPU to another: each instruction with one gets these three kinds at least.
    kinds = dict(query(db, "SELECT kind, count(*) FROM canaries GROUP BY 1"))
    assert {"truncated", "repetition", "weaker_model"} <= set(kinds)
    built = sum(kinds.values())
    judged = dict(
        query(db, "SELECT purpose, count(*) FROM ratings WHERE parse_status = 'ok' GROUP BY 1")
    )
    assert judged["canary"] >= 2 * built * 0.9  # both sides, few failures
    assert judged["label"] > 0 and judged["position_probe"] > 0
    [calibration] = query(
        db,
        "SELECT canaries, canary_accuracy, canary_ci_low, canary_ci_high, position_effect, "
        "sets_labels FROM judge_calibration",
    )
    canaries, accuracy, low, high, effect, sets_labels = calibration
    assert 0.9 * built <= canaries <= built and sets_labels  # canaries scored
    assert 0.0 <= low <= accuracy <= high <= 1.0
    assert effect is not None  # the reversed probe showed texts at two positions

    # The figures are in the ratings materialization's metadata, as the UI shows them.
    meta, verdicts = demo_batch_run(workdir / "data" / "dagster")
    assert meta["canary_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert meta["canary_accuracy_ci95"] == pytest.approx([low, high], abs=1e-4)
    assert meta["position_effect"] == pytest.approx(effect, abs=1e-4)
    assert set(meta["canary_accuracy_by_kind"]) == set(kinds)
    assert meta["canaries_built"] == built
    assert meta["mean_rating_by_position"]

    # The gates agree with the figures, whichever way this judge came out.
    assert verdicts["judge_canary_accuracy"] == (low > 0.5)
    assert verdicts["judge_position_bias"] == (abs(effect) <= 1.0)
    # Nothing cut at max_tokens, empty or degenerate is ever chosen.
    assert verdicts["unchoosable_chosen"]
    assert query(
        db,
        "SELECT count(*) FROM dpo_pairs p JOIN (SELECT completion_id, finish_reason FROM "
        "completions UNION ALL SELECT completion_id, finish_reason FROM evolved_completions) "
        "c ON c.completion_id = p.chosen_completion_id WHERE c.finish_reason = 'length'",
    ) == [(0,)]

    # `prefgen inspect` tells a real pair's story, every hop present.
    [(pair_id, chosen, rejected)] = query(
        db,
        "SELECT pair_id, chosen_completion_id, rejected_completion_id FROM candidate_pairs "
        "ORDER BY pair_id LIMIT 1",
    )
    shown = subprocess.run(
        [sys.executable, "-m", "prefgen_dagster.cli", "inspect", pair_id]
        + ["--config", str(config_path)],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        check=True,
    ).stdout
    for hop in (
        "instruction ",
        f"{BATCH} row ",
        "pooled completions",
        "EvolQuality rewrites",
        "judge answers",
        "raw answer (call ",
        f"*{pair_id}  chosen {chosen} ",
        f" over {rejected} ",
        f"batch {BATCH}: ",
    ):
        assert hop in shown, hop

    # Embeddings were on (the packaged all-MiniLM-L6-v2): every text has one, and the
    # diversity guard compared them.
    texts = 3 * instructions  # two answers by SmolLM2, one by the tiny model, one rewrite each
    assert query(
        db,
        "SELECT count(*) FILTER (WHERE len(embedding) = 384), count(*) FROM completions",
    ) == [(texts, texts)]
    assert query(db, "SELECT count(embedding) FROM evolved_completions") == [(texts,)]

    # The rerun of the unchanged batch asks nothing, canaries included.
    with dg.instance_for_test() as instance:
        again, _ = materialize_batch(config_path, BATCH, instance)
    assert {asset: engine_calls(again, asset) for asset in LLM_ASSETS} == dict.fromkeys(
        LLM_ASSETS, 0
    )

    # The same batch judged by a judge that rates by position: held back, and said why.
    with position_judge_server() as url:
        config = yaml.safe_load(config_path.read_text())
        config["models"]["position-judge"] = {
            "path": "position-judge",
            "backend": "openai",
            "base_urls": [url],
        }
        config["judge"]["models"] = ["position-judge"]
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        source = workdir / "data" / "inbox" / BATCH
        done = subprocess.run(
            [sys.executable, "-m", "prefgen_dagster.cli", "run", str(source), "--config",
             str(config_path)],
            capture_output=True, text=True, timeout=600, env=CLEAN_ENV,
        )  # fmt: skip
    out = done.stdout
    assert done.returncode == EXIT_HELD_BACK, out[-3000:] + done.stderr[-3000:]
    assert f"batch {BATCH}: held back by its blocking checks" in out
    assert "judge position-judge (listwise): canary accuracy" in out
    assert "held back: all" in out
    assert "judge_position_bias: judge position-judge rates by position" in out
    assert "pairs it would have made" in out
    [(effect,)] = query(db, "SELECT position_effect FROM judge_calibration")
    assert effect > 3.0  # first text 1, last 5, rounded steps between
    [(low,)] = query(db, "SELECT canary_ci_low FROM judge_calibration")
    assert low < 0.5
    # Only the judge was asked again: generation and rewrites came from the cache.
    assert re.search(r"completions\s+completions\s+\d+\s+0\s+\d+", out)
    assert re.search(r"evolved_completions\s+evolved_completions\s+\d+\s+0\s+\d+", out)
    assert query(db, "SELECT count(*) FROM llm_calls WHERE model = 'position-judge'")[0][0] > 0

    # The export leaves the batch out, says why, and keeps its pairs apart for a person to see.
    with dg.instance_for_test() as instance:
        export = materialize_export(config_path, instance)
    [event] = export.asset_materializations_for_node("preference_dataset")
    reasons = event.metadata["held_back_reasons"].value[BATCH]
    assert {reason.split(":")[0] for reason in reasons} >= set(GATES)
    held = pl.read_parquet(workdir / "data" / "export" / "held_back_pairs.parquet")
    assert held.height == query(db, "SELECT count(*) FROM dpo_pairs")[0][0]
    assert "judge_canary_accuracy" in held["held_back_because"][0]
    card = (workdir / "data" / "export" / "README.md").read_text()
    assert f"* {BATCH}: judge_canary_accuracy:" in card or "judge_position_bias" in card
    assert json.loads(json.dumps(reasons))  # plain JSON in the metadata
