"""A check added as a .sql file only: it becomes an asset check, blocks one batch's export,
and the UI shows it, with column lineage from dpo_pairs back to the instructions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.defs.pipeline_run import materialize_batch, materialize_export
from prefgen_dagster.sql.project import SQL_ROOT
from tests.conftest import CLEAN_ENV

from .conftest import drop_batch, exported_pairs, write_config
from .servers import dagster_webserver, graphql
from .test_pipeline_vllm import mt_bench_lines

POLICY_CHECK = """-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: Pairs for instructions that mention a topic we do not train on.
SELECT p.pair_id, i.instruction
FROM {{ ref('dpo_pairs') }} AS p
JOIN {{ ref('instructions') }} AS i USING (instruction_id)
WHERE i.instruction ILIKE '%forbidden%'
"""

LINEAGE_QUERY = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking description } } }
    assetMaterializations(limit: 1) {
      metadataEntries {
        label
        ... on TableColumnLineageMetadataEntry {
          lineage { columnName columnDeps { assetKey { path } columnName } }
        }
      }
    }
  }
}
"""


@pytest.mark.slow
def test_sql_only_check_blocks_a_batch_and_shows_in_the_ui(
    workdir: Path, tiny_models: Path
) -> None:
    sql_dir = workdir / "sql"
    shutil.copytree(SQL_ROOT, sql_dir)
    (sql_dir / "checks" / "no_forbidden_topics.sql").write_text(POLICY_CHECK)
    config_path = write_config(workdir, tiny_models, pairing={"min_margin": 0.0})
    drop_batch(workdir, "clean.jsonl", mt_bench_lines(2))
    drop_batch(
        workdir,
        "flagged.jsonl",
        [json.dumps({"instruction": "Write a short story about the forbidden library."})],
    )
    home = workdir / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        clean, _ = materialize_batch(config_path, "clean.jsonl", instance, sql_dir=sql_dir)
        flagged, skipped = materialize_batch(
            config_path, "flagged.jsonl", instance, sql_dir=sql_dir
        )
        # The failed blocking check fails the batch run, so it does not export; a later export
        # (e.g. after another batch) still holds the batch back.
        assert not flagged.success and skipped is None
        export = materialize_export(config_path, instance, sql_dir=sql_dir)

    verdicts = {e.check_name: e for e in flagged.get_asset_check_evaluations()}
    assert not verdicts["no_forbidden_topics"].passed
    assert verdicts["no_forbidden_topics"].severity == dg.AssetCheckSeverity.ERROR
    assert {e.check_name: e.passed for e in clean.get_asset_check_evaluations()}[
        "no_forbidden_topics"
    ]
    assert export.success
    [event] = export.asset_materializations_for_node("preference_dataset")
    assert event.metadata["batches_held_back"].value == ["flagged.jsonl"]
    dataset = exported_pairs(workdir)
    assert set(dataset["batch_id"]) == {"clean.jsonl"}

    env = {
        **CLEAN_ENV,
        "PREFGEN_CONFIG": str(config_path),
        "PREFGEN_SQL_DIR": str(sql_dir),
        "DAGSTER_HOME": str(home),
    }
    with dagster_webserver(env, workdir / "webserver.log") as url:
        nodes = {
            node["assetKey"]["path"][0]: node for node in graphql(url, LINEAGE_QUERY)["assetNodes"]
        }
    checks = {c["name"]: c for c in nodes["dpo_pairs"]["assetChecksOrError"]["checks"]}
    assert checks["no_forbidden_topics"]["blocking"]
    assert checks["no_forbidden_topics"]["description"].startswith("[ERROR, blocking]")

    def lineage(asset: str) -> dict[str, set[tuple[str, str]]]:
        [materialization] = nodes[asset]["assetMaterializations"]
        [entry] = [e for e in materialization["metadataEntries"] if "lineage" in e]
        return {
            row["columnName"]: {
                (d["assetKey"]["path"][0], d["columnName"]) for d in row["columnDeps"]
            }
            for row in entry["lineage"]
        }

    pairs = lineage("dpo_pairs")
    assert pairs["chosen_rating"] == {("candidate_pairs", "chosen_rating")}
    # A side also depends on whether people's verdicts flipped the pair.
    flip = {("candidates", "can_be_chosen"), ("human_verdicts", "choice")}
    flip.add(("human_verdicts", "pair_id"))
    scores = {("judge_scores", "score"), ("judge_scores", "aspects")}
    assert lineage("candidate_pairs")["chosen_rating"] == {*scores, *flip}
    assert pairs["instruction_id"] == {("candidate_pairs", "instruction_id")}
    assert lineage("candidate_pairs")["chosen_model"] == {("candidates", "model"), *flip}
    assert lineage("candidates")["instruction_id"] == {
        ("completions", "instruction_id"),
        ("evolved_completions", "instruction_id"),
    }
    assert lineage("completions")["instruction_id"] == {("instructions", "instruction_id")}
