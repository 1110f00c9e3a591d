"""The Python assets. Each reads its inputs from DuckDB, calls one stage, writes its rows.
Their code versions (from the config) and automation conditions are added in
`graph.build_graph`.

instructions -> completions -> evolved_completions -> candidates (SQL) -> ratings
-> judge_scores, candidate_pairs, human_agreement -> dpo_pairs (SQL, see `sql_assets.py`)
-> preference_dataset. The LLM stages' assets come from one factory (`llm_asset`) fed by
`LLM_STAGES`.
"""

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.checks import PythonCheck
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import EnginesResource, PrefgenResource
from prefgen_dagster.defs.step_log import progress_in_run_log
from prefgen_dagster.evol_quality import stage as evol_quality
from prefgen_dagster.generation import stage as generation
from prefgen_dagster.input.batches import batch_file, seen_in_other_batches
from prefgen_dagster.input.context import ContextLimits
from prefgen_dagster.input.datasets import dataset_of
from prefgen_dagster.input.inbox import refused_aside
from prefgen_dagster.input.read import read_rows
from prefgen_dagster.input.validate import SEEN_BEFORE, ingest
from prefgen_dagster.judge import stage as judge
from prefgen_dagster.llm.driver import run_stage
from prefgen_dagster.llm.stage import Batch, LLMStage
from prefgen_dagster.prompt_fit import context_warnings
from prefgen_dagster.stages import INPUT, Stage, pipeline_hash
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import batch_instructions

GROUP = "prefgen"


def common_metadata(config: PipelineConfig) -> dict[str, Any]:
    return {"pipeline_hash": pipeline_hash(config)}


@dg.asset(name=INPUT.asset, partitions_def=batches, group_name=GROUP, kinds={"duckdb"})
def instructions_asset(
    context: dg.AssetExecutionContext, prefgen: PrefgenResource
) -> dg.MaterializeResult:
    """The batch's file, validated, normalized and deduplicated (within the file, and against
    other batches ingested under the same settings). Every rejected row goes to
    `rejected_inputs` with its reason, so input rows = accepted + rejected. A file that cannot
    be read at all, or a link out of the inbox, is moved to `<inbox>/.refused/`
    (`input/inbox.py`)."""
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
            conversation_fields=config.input.conversation_fields,
            fits_context=limits.check,
            seen_before=seen_in_other_batches(storage, batch_id, settings),
        )
    seen_rows = sum(row["reason"].startswith(SEEN_BEFORE) for row in result.rejected)
    accepted = TABLES["instructions"].frame(result.accepted)
    rejected = TABLES["rejected_inputs"].frame(result.rejected)
    batch_row = {"batch_id": batch_id, "source": source, "input_rows": result.input_rows}
    batch_row |= {"accepted_rows": accepted.height, "rejected_rows": rejected.height}
    origin = dataset_of(path)
    batch_row["dataset"] = json.dumps(origin, sort_keys=True) if origin else None
    tables = {"batches": TABLES["batches"].frame([{**batch_row, "pipeline_hash": settings}])}
    storage.replace_partitions(
        batch_id, {**tables, "instructions": accepted, "rejected_inputs": rejected}
    )
    _log_rejections(context, source, result.rejected)
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
            **({"dataset": dg.MetadataValue.json(origin)} if origin else {}),
        },
    )


def _log_rejections(
    context: dg.AssetExecutionContext, source: str, rejected: list[dict[str, Any]]
) -> None:
    """Every rejection is in `rejected_inputs`; the run log gets the first few, not 100,000."""
    logged = 20
    for row in rejected[:logged]:
        context.log.warning(f"{row['source']} row {row['source_row']}: {row['reason']}")
    if len(rejected) > logged:
        context.log.warning(
            f"{source}: {len(rejected) - logged} more rejected rows in rejected_inputs"
        )


LATER_PROMPTS_FIT = "later_prompts_fit"


def later_prompts_fit(
    context: dg.AssetCheckExecutionContext, prefgen: PrefgenResource
) -> dg.AssetCheckResult:
    """The non-blocking check that later stages' prompts fit their models (the plan
    `prefgen run` made for its estimate when it has one, see `PrefgenResource.plan`)."""
    config, storage = prefgen.open()
    batch_id = context.partition_key
    instructions = list(batch_instructions(storage, batch_id).values())
    found = context_warnings(prefgen.plan(batch_id, instructions))
    for warning in found:
        context.log.warning(f"{batch_id}: {warning}")
    outcome = {"passed": not found, "failing_rows": len(found)}
    storage.record_check(
        {
            "batch_id": batch_id,
            "check_name": LATER_PROMPTS_FIT,
            "asset": instructions_asset.key.to_user_string(),
            "severity": "WARN",
            "blocking": False,
            **outcome,
            "reason": found[0] if found else None,
        }
    )
    return dg.AssetCheckResult(
        asset_key=instructions_asset.key,
        check_name=LATER_PROMPTS_FIT,
        passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failing_rows": len(found),
            **({"reason": found[0]} if found else {}),
            "context_warnings": dg.MetadataValue.json(found),
        },
    )


def _display_path(path: Path, config: PipelineConfig) -> str:
    try:
        return str(path.relative_to(Path(config.base_dir).resolve()))
    except ValueError:
        return str(path)


def llm_asset(stage: LLMStage) -> dg.AssetsDefinition:
    """The asset of an LLM stage: the stage's engines for the run of `llm/driver.run_stage`,
    its tables written in one transaction, its report as metadata and log lines."""
    spec = stage.spec

    @dg.asset(
        name=spec.asset,
        partitions_def=batches,
        group_name=GROUP,
        kinds={"duckdb", "vllm"},
        deps=list(stage.deps),
        description=inspect.getdoc(stage),
    )
    def _asset(
        context: dg.AssetExecutionContext, prefgen: PrefgenResource, engines: EnginesResource
    ) -> dg.MaterializeResult:
        config, storage = prefgen.open()
        batch_id = context.partition_key
        for warning in stage.warnings(config):
            context.log.warning(warning)
        with progress_in_run_log(context), engines.for_stage(config, spec.section) as pool:
            run = run_stage(stage, config, storage, batch_id, pool, context.run_id)
        with storage.session():  # one connection: the write, then the report's reads
            storage.replace_partitions(batch_id, run.outputs)
            report = stage.report(run.outputs, Batch(config, storage, batch_id))
        for line in report.log:
            context.log.info(line)
        stats = run.stats
        if stats.failed:
            kinds = ", ".join(f"{kind}: {n}" for kind, n in stats.failed_by_kind.most_common())
            context.log.warning(
                f"{stats.failed} LLM requests have no answer after retries ({kinds}); the "
                "stage kept going without them, their rows carry the error, and failed_calls "
                "says why"
            )
        frame = run.outputs[spec.table]
        return dg.MaterializeResult(
            data_version=metadata.data_version(frame),
            metadata={
                **metadata.frame_metadata(frame, spec.table, list(stage.preview)),
                "dagster/column_lineage": metadata.column_lineage(spec.column_sources),
                **common_metadata(config),
                **stats.as_metadata(),
                "llm_engine_calls_per_model": dg.MetadataValue.json(stats.per_model_calls),
                "llm_failed_by_kind": dg.MetadataValue.json(dict(stats.failed_by_kind)),
                **metadata.from_report(report.metadata),
            },
        )

    return _asset


# The LLM stages, in pipeline order: one entry per stage (its folder holds the rest).
LLM_STAGES: tuple[LLMStage, ...] = (generation.STAGE, evol_quality.STAGE, judge.STAGE)


def python_checks() -> list[PythonCheck]:
    """The checks written in Python (the others are `dbt_like_sql/checks/`), each run in its
    asset's checks step."""
    # Partitioned asset checks are a Dagster preview feature; the warning is known and noisy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        spec = dg.AssetCheckSpec(
            LATER_PROMPTS_FIT,
            asset=instructions_asset.key,
            partitions_def=batches,
            description="[WARN] The batch's rewrite and judge prompts fit their models' "
            "context, each text counted at its longest (`prompt_fit.context_warnings`): the "
            "pool's are checked by ingest itself, a request that does not fit fails alone and "
            "is recorded. Not blocking.",
        )
    return [PythonCheck(spec, later_prompts_fit)]


def python_assets() -> list[tuple[dg.AssetsDefinition, Stage]]:
    """Each Python stage's asset with its registry entry: the input, then the LLM stages."""
    return [(instructions_asset, INPUT), *((llm_asset(s), s.spec) for s in LLM_STAGES)]
