"""The `human_verdicts` input asset: people's verdicts on a batch's reviewed pairs, which the
review pull (`prefgen_dagster/review/`) writes into DuckDB.

The asset calls no model and reads nothing but that table, unless its run asks it to pull
first (`pull: true`, the `review_pull` job that the review sensor starts, `defs/review.py`):
then it reads the tool's verdicts into the table over HTTP, inside the run. Its
materialization records that the batch's verdicts changed, with their count and who said
what. The SQL models that ref the table (`candidate_pairs`, `human_agreement`) re-run after
it through `STAGE_CONDITION`, and `dpo_pairs` and the export follow. No LLM stage is
downstream of it, so a new verdict costs no engine call.
"""

from typing import Any

import dagster as dg

from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.assets import GROUP
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import PrefgenResource
from prefgen_dagster.review.client import ReviewProblem, client_from_env
from prefgen_dagster.review.round import pull
from prefgen_dagster.stages import INPUT_TABLES
from prefgen_dagster.storage.store import Storage

[VERDICTS] = INPUT_TABLES
# The config section the asset's tag names (`review:` holds what the verdicts do).
REVIEW_STAGE = "review"


def verdicts_metadata(storage: Storage, batch_id: str) -> tuple[dict[str, Any], dg.DataVersion]:
    """What the UI shows of a batch's verdicts, and their data version (the same verdicts
    give the same version)."""
    frame = storage.query(
        "SELECT pair_id, annotator, choice, chosen_shown, task_id, annotated_at "
        "FROM human_verdicts WHERE batch_id = ? ORDER BY pair_id, annotator",
        [batch_id],
    )
    meta = {
        **metadata.frame_metadata(frame, VERDICTS),
        "pairs_reviewed": frame["pair_id"].n_unique(),
        "annotators": frame["annotator"].n_unique(),
        "choices": metadata.distribution(frame["choice"], "choice"),
    }
    return meta, metadata.data_version(frame)


class VerdictsConfig(dg.Config):
    # Read the review tool's verdicts into the table before reading it (the review_pull job);
    # off in batch runs and after `prefgen review pull`, which has pulled already.
    pull: bool = False


@dg.asset(name=VERDICTS, partitions_def=batches, group_name=GROUP, kinds={"duckdb"})
def human_verdicts(
    context: dg.AssetExecutionContext, config: VerdictsConfig, prefgen: PrefgenResource
) -> dg.MaterializeResult:
    """People's verdicts on the batch's reviewed pairs (table `human_verdicts`, written by
    the review pull): an input, like the batch's file. Materializing it reads the table; the
    pair models that read the verdicts re-run after it."""
    pipeline, storage = prefgen.open()
    pulled: dict[str, Any] = {}
    if config.pull:
        try:
            client = client_from_env(pipeline.review.url, pipeline.review.token_env)
            report = pull(storage, client, context.partition_key)
        except ReviewProblem as err:
            raise dg.Failure(description=str(err)) from None
        context.log.info(str(report))
        for reason in report.skipped:
            context.log.warning(reason)
        pulled = {"pulled_from": client.url, "annotations_skipped": len(report.skipped)}
    meta, version = verdicts_metadata(storage, context.partition_key)
    return dg.MaterializeResult(metadata={**meta, **pulled}, data_version=version)


def verdicts_changed(instance: dg.DagsterInstance, storage: Storage, batch_id: str) -> None:
    """For the review pull: record that a batch's verdicts changed, as a materialization of
    `human_verdicts` without a run. The automation then re-runs that batch's pair models
    and the export (`dagster dev`'s daemon; `pipeline_run.materialize_verdicts` runs them at
    once)."""
    meta, _ = verdicts_metadata(storage, batch_id)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(VERDICTS, partition=batch_id, metadata=meta)
    )
