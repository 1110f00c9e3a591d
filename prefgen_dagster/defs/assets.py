"""The Python assets. Each reads its inputs from DuckDB, calls one stage, writes its rows.
Their code versions (from the config) and automation conditions are added in
`graph.build_graph`.

raw_instructions -> pooled_completions -> evolved_completions -> candidates (SQL) -> ratings
-> candidate_pairs -> dpo_pairs (SQL, see `sql_assets.py`) -> preference_dataset
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.cost import context_warnings, plan_batch
from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import EnginesResource, PrefgenResource
from prefgen_dagster.defs.step_log import progress_in_run_log
from prefgen_dagster.evolution.run import evolve_completions
from prefgen_dagster.generation.run import generate_completions
from prefgen_dagster.ingest.batches import batch_file, seen_in_other_batches
from prefgen_dagster.ingest.context import ContextLimits
from prefgen_dagster.ingest.inbox import refused_aside
from prefgen_dagster.ingest.read import read_rows
from prefgen_dagster.ingest.validate import SEEN_BEFORE, ingest
from prefgen_dagster.judging.calibration import (
    accuracy_by_kind,
    calibration_lines,
    mean_rating_by_position,
)
from prefgen_dagster.judging.plots import label_plots, read_frames
from prefgen_dagster.judging.run import Judged, rate_completions
from prefgen_dagster.judging.summary import histogram, summarize_ratings
from prefgen_dagster.llm.runner import RunStats
from prefgen_dagster.stages import EVOLUTION, GENERATION, JUDGING, Stage, pipeline_hash
from prefgen_dagster.storage.schema import TABLES

GROUP = "prefgen"


def common_metadata(config: PipelineConfig) -> dict[str, Any]:
    return {"pipeline_hash": pipeline_hash(config)}


def _llm_metadata(stats: RunStats) -> dict[str, Any]:
    return {
        **stats.as_metadata(),
        "llm_engine_calls_per_model": dg.MetadataValue.json(stats.per_model_calls),
        "llm_failed_by_kind": dg.MetadataValue.json(dict(stats.failed_by_kind)),
    }


@dg.asset(partitions_def=batches, group_name=GROUP, kinds={"duckdb"})
def raw_instructions(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource
) -> dg.MaterializeResult:
    """The batch's file, validated, normalized and deduplicated (within the file, and against
    other batches ingested under the same settings). Every rejected row goes to
    `rejected_inputs` with its reason, so input rows = accepted + rejected. A file that cannot
    be read at all, or a link out of the inbox, is moved to `<inbox>/.refused/` (`ingest/inbox`)."""
    config, storage = prefgen.open()
    batch_id = context.partition_key
    settings = pipeline_hash(config)
    limits = ContextLimits.from_config(config)
    with refused_aside(config.resolve(config.paths.inbox_dir), batch_id):
        path = batch_file(config, batch_id)
        if not path.exists():
            raise FileNotFoundError(f"batch {batch_id!r}: no file {path}")
        source = _display_path(path, config)
        result = ingest(
            read_rows(path),
            source,
            batch_id,
            instruction_field=config.input.instruction_field,
            system_prompt_field=config.input.system_prompt_field,
            fits_context=limits.check,
            seen_before=seen_in_other_batches(storage, batch_id, settings),
        )
    seen_rows = sum(row["reason"].startswith(SEEN_BEFORE) for row in result.rejected)
    accepted = TABLES["instructions"].frame(result.accepted)
    rejected = TABLES["rejected_inputs"].frame(result.rejected)
    batch_row = TABLES["batches"].frame(
        [
            {
                "batch_id": batch_id,
                "source": source,
                "input_rows": result.input_rows,
                "accepted_rows": accepted.height,
                "rejected_rows": rejected.height,
                "pipeline_hash": settings,
            }
        ]
    )
    storage.replace_partitions(
        batch_id, {"batches": batch_row, "instructions": accepted, "rejected_inputs": rejected}
    )
    # Every rejection is in `rejected_inputs`; the run log gets the first few, not 100,000.
    logged = 20
    for row in result.rejected[:logged]:
        context.log.warning(f"{row['source']} row {row['source_row']}: {row['reason']}")
    if len(result.rejected) > logged:
        context.log.warning(
            f"{source}: {len(result.rejected) - logged} more rejected rows in rejected_inputs"
        )
    # Later stages' prompts that may not fit their model (the pool's are checked above).
    warnings = context_warnings(plan_batch(result.accepted, config, batch_id))
    for warning in warnings:
        context.log.warning(f"{source}: {warning}")
    return dg.MaterializeResult(
        data_version=metadata.data_version(pl.concat([accepted, rejected], how="diagonal")),
        metadata={
            **metadata.frame_metadata(accepted, "instructions", ["source_row", "instruction"]),
            **common_metadata(config),
            "input_rows": result.input_rows,
            "accepted_rows": accepted.height,
            "rejected_rows": rejected.height,
            "seen_before_rows": seen_rows,
            "rejected_preview": dg.MetadataValue.md(
                metadata.markdown_table(rejected.select("source_row", "reason", "raw"), 10)
            ),
            "context_limits": dg.MetadataValue.json(limits.describe()),
            "context_warnings": dg.MetadataValue.json(warnings),
        },
    )


def _display_path(path: Path, config: PipelineConfig) -> str:
    try:
        return str(path.relative_to(Path(config.base_dir).resolve()))
    except ValueError:
        return str(path)


@dg.asset(
    partitions_def=batches,
    group_name=GROUP,
    kinds={"duckdb", "vllm"},
    deps=[raw_instructions],
)
def pooled_completions(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource, engines: EnginesResource
) -> dg.MaterializeResult:
    """`num_completions` answers per pool model per instruction (table `completions`)."""
    config, storage = prefgen.open()
    with progress_in_run_log(context), engines.for_stage(config, GENERATION.section) as pool:
        frame, stats = generate_completions(
            config, storage, context.partition_key, pool, context.run_id
        )
    storage.replace_partition(GENERATION.table, context.partition_key, frame)
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
    return _llm_result(
        context, GENERATION, frame, stats, config, ["model", "similarity", "text"], extra
    )


@dg.asset(
    partitions_def=batches,
    group_name=GROUP,
    kinds={"duckdb", "vllm"},
    deps=[pooled_completions],
)
def evolved_completions(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource, engines: EnginesResource
) -> dg.MaterializeResult:
    """EvolQuality rewrites of every pooled completion, `num_evolutions` rounds deep."""
    config, storage = prefgen.open()
    with progress_in_run_log(context), engines.for_stage(config, EVOLUTION.section) as pool:
        frame, stats = evolve_completions(
            config, storage, context.partition_key, pool, context.run_id
        )
    storage.replace_partition(EVOLUTION.table, context.partition_key, frame)
    extra = (
        {"mutations": metadata.distribution(frame["mutation"], "mutation")} if frame.height else {}
    )
    return _llm_result(
        context, EVOLUTION, frame, stats, config, ["mutation", "round", "text"], extra
    )


@dg.asset(
    partitions_def=batches,
    group_name=GROUP,
    kinds={"duckdb", "vllm"},
    # The texts it rates: the `candidates` SQL model (pooled and evolved completions).
    deps=["candidates"],
)
def ratings(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource, engines: EnginesResource
) -> dg.MaterializeResult:
    """UltraFeedback 1-5 ratings with rationales; unparseable answers stay NULL with raw text.
    The judge also rates the batch's canaries (table `canaries`) and, listwise, a reversed
    second look at some instructions; how it did is in `judge_calibration`."""
    config, storage = prefgen.open()
    self_judging = config.self_judging()
    if self_judging:
        context.log.warning(
            f"judge(s) {self_judging} also generate completions or rewrites; LLM judges tend to "
            "prefer their own text (self-preference bias). Consider a judge outside the pool."
        )
    with progress_in_run_log(context), engines.for_stage(config, JUDGING.section) as pool:
        judged, stats = rate_completions(
            config, storage, context.partition_key, pool, context.run_id
        )
    frame = judged.ratings
    with storage.session():  # one connection: the write, then the plots' reads
        storage.replace_partitions(
            context.partition_key,
            {
                "ratings": frame,
                "canaries": judged.canaries,
                "judge_calibration": judged.calibration,
            },
        )
        frames = read_frames(storage, [context.partition_key])
    for line in calibration_lines(judged.calibration, config.names_by_identity()):
        context.log.info(line)
    drawn = label_plots(frames, config.names_by_identity(), config.checks.min_canary_accuracy)
    extra: dict[str, Any] = {
        "self_judging_models": dg.MetadataValue.json(self_judging),
        **_calibration_metadata(judged),
        "plots": metadata.plots(drawn),
    }
    if frame.height:
        labels = frame.filter(pl.col("purpose") == "label")
        failures = frame.filter(pl.col("parse_status") != "ok").height
        summary = summarize_ratings(frame.filter(pl.col("purpose") != "canary"))
        extra |= {
            "rating_distribution": metadata.distribution(labels["rating"], "rating"),
            "parse_status": metadata.distribution(frame["parse_status"], "status"),
            "parse_failure_rate": round(failures / frame.height, 4),
            "parse_failure_rate_per_judge": dg.MetadataValue.json(
                summary["parse_failure_rate_per_judge"]
            ),
            "mean_rating_by_position": dg.MetadataValue.json(mean_rating_by_position(frame)),
            "order_disagreement_rate": summary["order_disagreement_rate"],
            "order_comparisons": summary["order_comparisons"],
            "judge_agreement_alpha": summary["judge_alpha"],
            "judge_agreement_mean_tau": summary["judge_mean_tau"],
        }
    return _llm_result(
        context,
        JUDGING,
        frame,
        stats,
        config,
        ["purpose", "position", "rating", "rationale"],
        extra,
    )


def _calibration_metadata(judged: Judged) -> dict[str, Any]:
    """The judge's canary accuracy and position effect, for the UI."""
    calibration = judged.calibration
    if calibration.is_empty():
        return {"canaries_built": judged.canaries.height}
    [labels] = calibration.filter(pl.col("sets_labels")).to_dicts()
    rounded = {
        key: None if value is None else round(value, 4)
        for key, value in labels.items()
        if key in ("canary_accuracy", "canary_ci_low", "canary_ci_high", "position_effect")
    }
    return {
        "canaries_built": judged.canaries.height,
        "canary_accuracy": rounded["canary_accuracy"],
        "canary_accuracy_ci95": dg.MetadataValue.json(
            [rounded["canary_ci_low"], rounded["canary_ci_high"]]
        ),
        "position_effect": rounded["position_effect"],
        "canary_accuracy_by_kind": dg.MetadataValue.json(
            accuracy_by_kind(judged.ratings, judged.canaries, labels["judge"])
        ),
        "judge_calibration": dg.MetadataValue.md(metadata.markdown_table(calibration, 20)),
    }


def _llm_result(
    context: dg.AssetExecutionContext,
    stage: Stage,
    frame: pl.DataFrame,
    stats: RunStats,
    config: PipelineConfig,
    preview: list[str],
    extra: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    if stats.failed:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in stats.failed_by_kind.most_common())
        context.log.warning(
            f"{stats.failed} LLM requests have no answer after retries ({kinds}); the stage "
            "kept going without them, their rows carry the error, and failed_calls says why"
        )
    return dg.MaterializeResult(
        data_version=metadata.data_version(frame),
        metadata={
            **metadata.frame_metadata(frame, stage.table, preview),
            "dagster/column_lineage": metadata.column_lineage(stage.column_sources),
            **common_metadata(config),
            **_llm_metadata(stats),
            **(extra or {}),
        },
    )


PYTHON_ASSETS = [raw_instructions, pooled_completions, evolved_completions, ratings]
