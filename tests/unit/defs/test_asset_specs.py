"""What the Dagster UI shows before and after a run: owners and stage tags on every asset,
described columns, SQL models' comments as markdown, checks with the values they run with,
and the label plots embedded in metadata."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

import prefgen_dagster
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.assets import LATER_PROMPTS_FIT
from prefgen_dagster.defs.graph import OWNERS, PipelineGraph, build_graph
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.sql_assets import comment_markdown
from prefgen_dagster.judge.plots import LabelFrames, label_plots
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.stages import BY_ASSET, STAGES
from prefgen_dagster.storage.schema import TABLES

PACKAGE = Path(prefgen_dagster.__file__).parent
CHECKS = {check.name: check for check in load_project().checks}


def specs(graph: PipelineGraph) -> dict[str, dg.AssetSpec]:
    return {
        spec.key.to_user_string(): spec
        for definition in [*graph.batch_assets, graph.export_asset]
        for spec in definition.specs
    }


def check_descriptions(graph: PipelineGraph) -> dict[str, str]:
    return {
        spec.name: spec.description or ""
        for definition in graph.checks
        for spec in definition.check_specs
    }


def test_every_asset_has_owners_and_its_stage_tag(config: PipelineConfig) -> None:
    tags = {name: spec.tags.get("stage") for name, spec in specs(build_graph(config)).items()}
    expected = {asset: stage.section for asset, stage in BY_ASSET.items()}
    expected |= {
        "candidates": "pairing",
        "candidate_pairs": "pairing",
        "judge_scores": "pairing",
        "human_agreement": "pairing",
        "dpo_pairs": "pairing",
        "human_verdicts": "review",
    }
    assert tags == {**expected, "preference_dataset": "export"}
    assert all(spec.owners == OWNERS for spec in specs(build_graph(config)).values())


def test_a_stage_is_named_by_its_folder_and_section_and_by_its_table() -> None:
    # What it does: its config section and its folder; what it makes: its asset and table.
    for stage in STAGES:
        assert stage.package == f"prefgen_dagster.{stage.section}"
        assert stage.section in PipelineConfig.model_fields
        assert (PACKAGE / stage.section / "__init__.py").exists()
        assert stage.asset == stage.table and stage.table in TABLES


def test_table_columns_are_described_before_any_run(config: PipelineConfig) -> None:
    graph = specs(build_graph(config))
    for name in ["ratings", "completions", "dpo_pairs"]:
        schema = graph[name].metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == [c.split()[0] for c in TABLES[name].columns]
        assert all(column.description for column in schema.columns), name
    ratings = graph["ratings"].metadata["dagster/column_schema"].columns
    position = {column.name: column for column in ratings}["position"]
    assert position.type == "INTEGER" and "judge's prompt" in position.description


def test_a_written_frame_has_described_columns() -> None:
    frame = pl.DataFrame({"batch_id": ["b"], "chars": [3], "mystery": [1.0]})
    meta = metadata.frame_metadata(frame, "candidates")
    columns = {c.name: c for c in meta["dagster/column_schema"].columns}
    assert columns["chars"].type == "Int64" and "characters" in columns["chars"].description
    assert columns["mystery"].description is None
    assert meta["dagster/row_count"] == 1


def test_check_descriptions_show_the_values_they_run_with(
    make_config: Callable[..., PipelineConfig],
) -> None:
    graph = build_graph(make_config(checks={"max_failed_request_rate": 0.07}))
    described = check_descriptions(graph)
    assert described["llm_request_reconciliation"].endswith(
        "Runs with max_failed_request_rate = 0.07."
    )
    assert "max_position_effect = 1.0, judge_decides = true" in described["judge_position_bias"]
    # A check that reads no config value says nothing more.
    assert "Runs with" not in described["input_reconciliation"]


def test_a_sql_models_comment_keeps_its_lists_and_paragraphs(config: PipelineConfig) -> None:
    description = specs(build_graph(config))["candidate_pairs"].description or ""
    assert description.startswith("SQL model `candidate_pairs.sql`.\n\n")
    assert "\n* `best_vs_worst` the best- against" in description
    assert "\n* `best_vs_random_lower` the best against" in description
    assert "\n\nA rule decides" in description
    comment = (
        "-- A model. It does\n"
        "-- things:\n"
        "--   first    one thing, over two\n"
        "--            lines\n"
        "--   second   another\n"
        "-- After the list.\n"
        "--\n"
        "-- New paragraph\n"
        "SELECT 1"
    )
    assert comment_markdown(comment) == (
        "A model. It does things:\n\n"
        "* `first` one thing, over two lines\n"
        "* `second` another\n\n"
        "After the list.\n\n"
        "New paragraph"
    )


def test_the_plots_entry_embeds_each_image_with_its_caption() -> None:
    ratings = pl.DataFrame(
        {
            "judge": ["j", "j"],
            "purpose": ["label", "label"],
            "position": [1, 2],
            "shown": [2, 2],
            "rating": [5, 2],
            "aspect": ["a", "a"],
            "completion_id": ["c1", "c2"],
        }
    )
    empty = pl.DataFrame()
    drawn = label_plots(LabelFrames(ratings, empty, empty, empty))
    entry = metadata.plots(drawn)
    assert isinstance(entry, dg.MarkdownMetadataValue)
    text = entry.value
    images = text.split("![")[1:]
    assert len(images) == len(drawn) == 2
    for image, plot in zip(images, drawn, strict=True):
        title, rest = image.split("](data:image/png;base64,", 1)
        encoded, caption = rest.split(")\n\n", 1)
        assert title == plot.title
        assert base64.b64decode(encoded).startswith(b"\x89PNG")
        assert caption.startswith(f"_{plot.caption}_")


def test_the_export_preview_shows_the_conversation_flat() -> None:
    record: dict[str, Any] = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
        "chosen": [{"role": "assistant", "content": "Good."}],
        "rejected": [{"role": "assistant", "content": "Bad."}],
        "score_chosen": 5.0,
        "score_rejected": 2.0,
        "margin": 3.0,
    }
    table = metadata.pairs_preview([record] * 7)
    lines = table.splitlines()
    assert lines[0] == "| prompt | chosen | rejected | score_chosen | score_rejected | margin |"
    assert lines[2] == "| Q? | Good. | Bad. | 5.0 | 2.0 | 3.0 |"
    assert len(lines) == 2 + 5


def test_the_checks_of_an_asset_run_as_one_step(config: PipelineConfig) -> None:
    graph = build_graph(config)
    steps = {
        definition.node_def.name: sorted(spec.name for spec in definition.check_specs)
        for definition in graph.checks
    }
    expected: dict[str, list[str]] = {}
    for check in load_project().checks:
        expected.setdefault(f"{check.asset}_checks", []).append(check.name)
    # The check written in Python runs in the same step as instructions' SQL ones.
    expected["instructions_checks"].append(LATER_PROMPTS_FIT)
    assert steps == {step: sorted(names) for step, names in expected.items()}
    assert len(steps) == 3  # instructions, ratings, dpo_pairs
    # Each check keeps its own blocking flag and partitions.
    for definition in graph.checks:
        for spec in definition.check_specs:
            sql = CHECKS.get(spec.name)
            assert spec.blocking == (sql.blocking if sql else False)
            assert spec.partitions_def == batches
