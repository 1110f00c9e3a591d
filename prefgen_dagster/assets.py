"""The asset graph. Each asset reads its inputs from DuckDB, calls one stage, writes its rows.

raw_instructions -> pooled_completions -> evolved_completions -> ratings -> dpo_pairs
    -> preference_dataset (unpartitioned: every batch whose blocking checks passed)
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster import export, metadata, stages
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.ingest import ingest, read_rows
from prefgen_dagster.llm_runner import RunStats
from prefgen_dagster.partitions import batch_file, batches
from prefgen_dagster.rating_summary import histogram, summarize_ratings
from prefgen_dagster.resources import PrefgenResource
from prefgen_dagster.sql_layer import SQL_ROOT, load_checks, load_models

GROUP = "prefgen"


def _common(config: PipelineConfig) -> dict[str, Any]:
    return {"pipeline_hash": config.pipeline_hash()}


def _llm_metadata(stats: RunStats) -> dict[str, Any]:
    return {
        **stats.as_metadata(),
        "llm_engine_calls_per_model": dg.MetadataValue.json(stats.per_model_calls),
    }


@dg.asset(partitions_def=batches, group_name=GROUP, kinds={"duckdb"})
def raw_instructions(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource
) -> dg.MaterializeResult:
    """The batch's file, validated, normalized and deduplicated. Every rejected row goes to
    `rejected_inputs` with its reason, so input rows = accepted + rejected."""
    config, storage = prefgen.load(), prefgen.storage()
    batch_id = context.partition_key
    path = batch_file(config, batch_id)
    if not path.exists():
        raise FileNotFoundError(f"batch {batch_id!r}: no file {path}")
    result = ingest(read_rows(path), _display_path(path, config), batch_id)
    accepted = pl.DataFrame(result.accepted, schema=_INSTRUCTION_SCHEMA)
    rejected = pl.DataFrame(result.rejected, schema=_REJECTED_SCHEMA)
    storage.replace_partition("instructions", batch_id, accepted)
    storage.replace_partition("rejected_inputs", batch_id, rejected)
    for row in result.rejected:
        context.log.warning(f"{row['source']} row {row['source_row']}: {row['reason']}")
    return dg.MaterializeResult(
        metadata={
            **metadata.frame_metadata(accepted, ["source_row", "instruction"]),
            **_common(config),
            "input_rows": result.input_rows,
            "accepted_rows": accepted.height,
            "rejected_rows": rejected.height,
            "rejected_preview": dg.MetadataValue.md(
                metadata.markdown_table(rejected.select("source_row", "reason", "raw"), 10)
            ),
        }
    )


_INSTRUCTION_SCHEMA = {
    "batch_id": pl.String,
    "instruction_id": pl.String,
    "instruction": pl.String,
    "system_prompt": pl.String,
    "source": pl.String,
    "source_row": pl.Int64,
}
_REJECTED_SCHEMA = {
    "batch_id": pl.String,
    "source": pl.String,
    "source_row": pl.Int64,
    "raw": pl.String,
    "reason": pl.String,
}


def _display_path(path: Path, config: PipelineConfig) -> str:
    try:
        return str(path.relative_to(Path(config.base_dir).resolve()))
    except ValueError:
        return str(path)


@dg.asset(
    partitions_def=batches, group_name=GROUP, kinds={"duckdb", "vllm"}, deps=[raw_instructions]
)
def pooled_completions(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource
) -> dg.MaterializeResult:
    """`num_completions` answers per pool model per instruction (table `completions`)."""
    config, storage = prefgen.load(), prefgen.storage()
    frame, stats = stages.generate_completions(config, storage, context.partition_key)
    storage.replace_partition("completions", context.partition_key, frame)
    extra = {}
    if frame.height:
        extra = {
            "models": metadata.distribution(frame["model"], "model"),
            "similarity_histogram": dg.MetadataValue.json(
                histogram(frame["similarity"].to_list(), 0.1)
            ),
            "too_similar_kept": int(frame["too_similar"].sum()),
            "regenerated": int((frame["regenerations"] > 0).sum()),
        }
    return _llm_result(frame, stats, config, ["model", "similarity", "text"], extra)


@dg.asset(
    partitions_def=batches, group_name=GROUP, kinds={"duckdb", "vllm"}, deps=[pooled_completions]
)
def evolved_completions(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource
) -> dg.MaterializeResult:
    """EvolQuality rewrites of every pooled completion, `num_evolutions` rounds deep."""
    config, storage = prefgen.load(), prefgen.storage()
    frame, stats = stages.evolve_completions(config, storage, context.partition_key)
    storage.replace_partition("evolved_completions", context.partition_key, frame)
    extra = (
        {"mutations": metadata.distribution(frame["mutation"], "mutation")} if frame.height else {}
    )
    return _llm_result(frame, stats, config, ["mutation", "round", "text"], extra)


@dg.asset(
    partitions_def=batches, group_name=GROUP, kinds={"duckdb", "vllm"}, deps=[evolved_completions]
)
def ratings(context: dg.AssetExecutionContext, prefgen: PrefgenResource) -> dg.MaterializeResult:
    """UltraFeedback 1-5 ratings with rationales; unparseable answers stay NULL with raw text."""
    config, storage = prefgen.load(), prefgen.storage()
    self_judging = config.self_judging()
    if self_judging:
        context.log.warning(
            f"judge(s) {self_judging} also generate completions or rewrites; LLM judges tend to "
            "prefer their own text (self-preference bias). Consider a judge outside the pool."
        )
    frame, stats = stages.rate_completions(config, storage, context.partition_key)
    storage.replace_partition("ratings", context.partition_key, frame)
    extra: dict[str, Any] = {"self_judging_models": dg.MetadataValue.json(self_judging)}
    if frame.height:
        failures = frame.filter(pl.col("parse_status") != "ok").height
        summary = summarize_ratings(frame)
        extra |= {
            "rating_distribution": metadata.distribution(frame["rating"], "rating"),
            "parse_status": metadata.distribution(frame["parse_status"], "status"),
            "parse_failure_rate": round(failures / frame.height, 4),
            "parse_failure_rate_per_judge": dg.MetadataValue.json(
                summary["parse_failure_rate_per_judge"]
            ),
            "order_disagreement_rate": summary["order_disagreement_rate"],
            "order_comparisons": summary["order_comparisons"],
            "judge_agreement_alpha": summary["judge_alpha"],
            "judge_agreement_mean_tau": summary["judge_mean_tau"],
        }
    return _llm_result(
        frame, stats, config, ["position", "rating", "parse_status", "rationale"], extra
    )


def _llm_result(
    frame: pl.DataFrame,
    stats: RunStats,
    config: PipelineConfig,
    preview: list[str],
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            **metadata.frame_metadata(frame, preview),
            **_common(config),
            **_llm_metadata(stats),
            **(extra or {}),
        }
    )


@dg.asset(partitions_def=batches, group_name=GROUP, kinds={"duckdb", "sql"}, deps=[ratings])
def dpo_pairs(context: dg.AssetExecutionContext, prefgen: PrefgenResource) -> dg.MaterializeResult:
    """Chosen/rejected pairs, built by `dbt_like_sql/models/dpo_pairs.sql`."""
    config, storage = prefgen.load(), prefgen.storage()
    batch_id = context.partition_key
    model = load_models(SQL_ROOT)["dpo_pairs"]
    frame = storage.query(*model.render(batch_id, config.sql_vars()))
    frame = frame.with_columns(pl.lit(batch_id).alias("batch_id"))
    storage.replace_partition("dpo_pairs", batch_id, frame)
    meta = {
        **metadata.frame_metadata(
            frame, ["chosen_model", "rejected_model", "chosen_rating", "rejected_rating", "margin"]
        ),
        **_common(config),
        "sql_model": dg.MetadataValue.path(str(model.path)),
    }
    if frame.height:
        meta["margin_histogram"] = dg.MetadataValue.json(histogram(frame["margin"].to_list(), 0.5))
        meta["judge_agreement"] = metadata.distribution(frame["judge_agreement"], "share")
        meta["chosen_origin"] = metadata.distribution(frame["chosen_origin"], "origin")
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "huggingface"},
    deps=[dpo_pairs],
    automation_condition=dg.AutomationCondition.eager(),
)
def preference_dataset(prefgen: PrefgenResource) -> dg.MaterializeResult:
    """All batches whose blocking checks passed, minus pairs flagged by filter checks, as a
    `datasets` dataset on disk and Parquet in TRL's conversational format."""
    config, storage = prefgen.load(), prefgen.storage()
    pairs, summary = export.collect_pairs(storage, load_checks(SQL_ROOT), config.sql_vars())
    records = export.to_trl_records(pairs)
    card = export.dataset_card(records, summary, config.pipeline_hash())
    paths = export.write_dataset(records, config.resolve(config.paths.export_dir), card)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(records),
            **_common(config),
            "batches_exported": dg.MetadataValue.json(summary["batches_exported"]),
            "batches_held_back": dg.MetadataValue.json(summary["batches_held_back"]),
            "pairs_filtered": summary["pairs_filtered"],
            "dataset_dir": dg.MetadataValue.path(paths["dataset_dir"]),
            "parquet": dg.MetadataValue.path(paths["parquet"]),
        }
    )


BATCH_ASSETS = [raw_instructions, pooled_completions, evolved_completions, ratings, dpo_pairs]
