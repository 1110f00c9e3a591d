"""Assets made from `dbt_like_sql/`: one per model file, plus the export, which writes the
final pairs of every batch that passed its blocking checks."""

import re
from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.assets import GROUP, common_metadata
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import PrefgenResource
from prefgen_dagster.export import dataset as export
from prefgen_dagster.export.card import dataset_card, write_plots
from prefgen_dagster.export.story import story
from prefgen_dagster.judge.human_agreement import (
    HUMAN_AGREEMENT,
    PAIRS,
    agreement_lines,
    read_agreement,
)
from prefgen_dagster.judge.plan import judge_settings
from prefgen_dagster.judge.plots import LabelFrames, label_plots, read_frames
from prefgen_dagster.sql.project import SqlFile, SqlProject, column_lineage
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.stages import asset_of, pipeline_hash
from prefgen_dagster.storage.columns import EXPORT
from prefgen_dagster.storage.store import Storage
from prefgen_dagster.summaries import histogram

EXPORT_GROUP = "export"


def build_model_asset(model: SqlFile, project: SqlProject) -> dg.AssetsDefinition:
    """A partitioned asset that runs the model's SELECT for the batch and replaces the
    batch's rows in the table of the same name. (Its code version, the SQL text and the
    values of its vars, is added in `graph.build_graph`.)"""
    deps = sorted({asset_of(ref) for ref in model.refs})

    @dg.asset(
        name=model.name,
        partitions_def=batches,
        group_name=GROUP,
        kinds={"duckdb", "sql"},
        deps=deps,
        description=f"SQL model `{model.path.name}`.\n\n" + comment_markdown(model.sql),
        metadata={"sql_file": dg.MetadataValue.path(str(model.path))},
    )
    def _model(context: dg.AssetExecutionContext, prefgen: PrefgenResource) -> dg.MaterializeResult:
        config, storage = prefgen.open()
        batch_id = context.partition_key
        with storage.session():  # one connection for the step's queries
            frame = storage.query(*model.render(batch_id, sql_vars(config)))
            frame = frame.with_columns(pl.lit(batch_id).alias("batch_id"))
            storage.replace_partition(model.name, batch_id, frame)
            # The batch's agreement with people, on the model that makes it and on those
            # after it (dpo_pairs depends on it for this).
            agreement = (
                read_agreement(storage, [batch_id])
                if HUMAN_AGREEMENT in (model.name, *model.refs)
                else pl.DataFrame()
            )
            lineage = column_lineage(model, storage.column_types())
            meta = {
                **metadata.frame_metadata(frame, model.name),
                **common_metadata(config),
                "dagster/column_lineage": metadata.column_lineage(
                    {
                        column: [(asset_of(table), name) for table, name in sources]
                        for column, sources in lineage.items()
                    }
                ),
                **_pair_metadata(frame, config, agreement),
                **_agreement_metadata(agreement, config.names_by_identity()),
                **_pair_story(storage, frame),
            }
            return dg.MaterializeResult(metadata=meta, data_version=metadata.data_version(frame))

    return _model


# In a comment, an indented `term   what it means` line is an item of a list of terms.
_TERM = re.compile(r"^ {2,7}(\S+) +(.*)$")
_CONTINUED = re.compile(r"^ {8,}\S")


def comment_markdown(sql: str) -> str:
    """The file's leading `--` comment as markdown, so the UI keeps its shape. The comments
    are wrapped prose: indented `term   meaning` lines become list items (deeper-indented
    lines continue them), and a line after a blank one or after the end of a sentence starts
    a new paragraph."""
    blocks: list[list[str]] = []  # [kind ("item" or "text"), markdown]
    fresh = True
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        text = line[3:] if line.startswith("-- ") else line[2:]
        stripped = text.strip()
        term = _TERM.match(text)
        if term:
            blocks.append(["item", f"* `{term.group(1)}` {term.group(2).strip()}"])
        elif (
            stripped
            and not fresh
            and (
                _CONTINUED.match(text)
                if blocks[-1][0] == "item"
                else not blocks[-1][1].endswith((".", ":"))
            )
        ):
            blocks[-1][1] += " " + stripped
        elif stripped:
            blocks.append(["text", stripped])
        fresh = not stripped
    parts = []
    for i, (kind, text) in enumerate(blocks):
        if i:
            parts.append("\n" if kind == "item" == blocks[i - 1][0] else "\n\n")
        parts.append(text)
    return "".join(parts)


def _pair_metadata(
    frame: pl.DataFrame, config: PipelineConfig, agreement: pl.DataFrame
) -> dict[str, Any]:
    """Distributions for any model that produces pairs (margin, origins, agreement), and
    the plots of its margins and of the batch's agreement with people."""
    if not frame.height or "margin" not in frame.columns:
        return {}
    meta: dict[str, Any] = {
        "margin_histogram": dg.MetadataValue.json(histogram(frame["margin"].to_list(), 0.5))
    }
    for column, label in (("judge_agreement", "share"), ("chosen_origin", "origin")):
        if column in frame.columns:
            meta[column] = metadata.distribution(frame[column], label)
    if "dropped_because" in frame.columns:
        rule = frame["dropped_because"].str.split(":").list.first().fill_null("kept")
        meta["dropped_because"] = metadata.distribution(rule, "rule")
    if "human_review" in frame.columns:
        action = frame["human_review"].str.split(":").list.first().fill_null("no verdict")
        meta["human_review"] = metadata.distribution(action, "people's verdicts")
    # The label plots these rows have data for: the margins, and the agreement with people.
    empty = pl.DataFrame()
    drawn = label_plots(
        LabelFrames(empty, empty, empty, frame, agreement),
        config.names_by_identity(),
        agreement_bound=config.review.min_agreement,
    )
    meta["plots"] = metadata.plots(drawn)
    return meta


def _agreement_metadata(agreement: pl.DataFrame, names: dict[str, str]) -> dict[str, Any]:
    """The batch's agreement with people (`human_agreement` rows): its figures as lines,
    and the pairs' agreement with its interval as numbers the UI can plot across runs."""
    if agreement.is_empty():
        return {}
    rows = agreement.to_dicts()
    pairs = next(row for row in rows if row["judge"] == PAIRS)
    lines = agreement_lines(rows, names)
    return {
        "human_agreement": dg.MetadataValue.md("\n".join(f"* {line}" for line in lines)),
        "judge_human_agreement": pairs["agreement"],
        "judge_human_agreement_ci95": dg.MetadataValue.json(
            [pairs["agreement_ci_low"], pairs["agreement_ci_high"]]
        ),
        "human_verdicts_scored": pairs["verdicts"],
        "annotator_agreement": pairs["annotator_agreement"],
    }


def _pair_story(storage: Storage, frame: pl.DataFrame) -> dict[str, Any]:
    """One pair's whole story, as `prefgen inspect` prints it: an example of tracing any
    pair of the batch from its instruction to the pairing decision."""
    if not frame.height or "pair_id" not in frame.columns:
        return {}
    pair_id = frame["pair_id"].sort()[0]
    text = story(storage, pair_id).replace("```", "'''")  # keep the code block whole
    command = f"prefgen inspect {pair_id} --config <your config>"
    return {"one_pair_story": dg.MetadataValue.md(f"`{command}`\n\n```\n{text}\n```")}


def build_export_asset(project: SqlProject) -> dg.AssetsDefinition:
    """The unpartitioned export (its code version and automation condition are added in
    `graph.build_graph`)."""

    @dg.asset(
        name=EXPORT,
        group_name=EXPORT_GROUP,
        kinds={"duckdb", "huggingface"},
        deps=["dpo_pairs"],
    )
    def _export(prefgen: PrefgenResource) -> dg.MaterializeResult:
        """The pairs of every batch whose blocking checks passed, as a `datasets` dataset on
        disk and Parquet in TRL's conversational format."""
        config, storage = prefgen.open()
        blocking = [check.name for check in project.checks if check.blocking]
        judge = judge_settings(config) if config.judge else None
        with storage.session():  # one connection for the export's reads
            pairs, summary = export.collect_pairs(storage, blocking, judge)
            ready = summary["batches_exported"]
            frames = read_frames(storage, ready, pairs, read_agreement(storage, ready))
            held = export.held_back_pairs(storage, summary["held_back_reasons"])
        records = export.to_trl_records(
            pairs, config.names_by_identity(), config.export.test_fraction
        )
        drawn = label_plots(
            frames,
            config.names_by_identity(),
            config.checks.min_canary_accuracy,
            config.review.min_agreement,
        )
        card = dataset_card(records, summary, config, pipeline_hash(config), drawn)
        paths = export.write_dataset(records, config.resolve(config.paths.export_dir), card, held)
        write_plots(drawn, config.resolve(config.paths.export_dir))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(records),
                "dagster/column_schema": metadata.column_schema(
                    EXPORT, dict(pl.DataFrame(records).schema)
                ),
                "preview": dg.MetadataValue.md(metadata.pairs_preview(records)),
                "plots": metadata.plots(drawn),
                **common_metadata(config),
                "batches_exported": dg.MetadataValue.json(summary["batches_exported"]),
                "batches_held_back": dg.MetadataValue.json(summary["batches_held_back"]),
                "held_back_reasons": dg.MetadataValue.json(summary["held_back_reasons"]),
                "held_back_pairs": held.height,
                "pairs_dropped": summary["pairs_dropped"],
                "dataset_dir": dg.MetadataValue.path(paths["dataset_dir"]),
                "parquet": dg.MetadataValue.path(paths["parquet"]),
                "held_back_parquet": dg.MetadataValue.path(paths["held_back"]),
            }
        )

    return _export
