"""A review round from Dagster: the `review_push` job sends a batch's sample to the annotation
tool, the `review_sensor` polls the tool and starts a `review_pull` run when a reviewed batch's
annotations changed (`prefgen_dagster/review/` does the work; the CLI's `prefgen review` the
same by hand).

* Push is a job, not an asset: it acts on another system (tasks people will see) and has no
  table of its own beyond the `review_tasks` bookkeeping, and it must run when a person asks
  for it, never because the automation found the pairs updated.
* The pull happens in the run, not in the sensor (sensors time out after 60 s): the run's
  `human_verdicts` asset pulls first (its `pull` config), then the pair models and their
  checks follow in the same run, and the automation exports.
* The sensor makes one short HTTP request per reviewed batch (`LabelStudio.project_signature`)
  and reads `review_tasks` under the DuckDB file's lock for at most `LOCK_WAIT_S`: a file held
  longer (a run writing) skips the tick, with why.
"""

import json
from typing import Any

import dagster as dg

from prefgen_dagster.defs.assets import GROUP
from prefgen_dagster.defs.automation import batch_request
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import PrefgenResource
from prefgen_dagster.defs.verdicts import VERDICTS
from prefgen_dagster.review.client import ReviewProblem, client_from_env
from prefgen_dagster.review.round import push
from prefgen_dagster.storage.store import Storage, StorageUnavailable

POLL_INTERVAL_S = 300
# The sensor's budget within Dagster's 60 s: the DuckDB file's lock, then each request.
LOCK_WAIT_S = 5.0
HTTP_TIMEOUT_S = 10.0


@dg.op
def review_push(context: dg.OpExecutionContext, prefgen: PrefgenResource) -> dg.Output[None]:
    """`prefgen review push BATCH`: one blind task per sampled pair not sent before."""
    config, storage = prefgen.open()
    try:
        client = client_from_env(config.review.url, config.review.token_env)
        report = push(config, storage, client, context.partition_key)
    except ReviewProblem as err:
        raise dg.Failure(description=str(err)) from None
    context.log.info(str(report))
    return dg.Output(
        None,
        metadata={
            "review_url": client.url,
            "project_id": report.project_id,
            "tasks_sent": report.sent,
            "tasks_sent_before": report.already,
            "candidate_pairs": report.candidates,
        },
    )


@dg.job(partitions_def=batches, description="Send a batch's review sample to the annotation tool.")
def review_push_job() -> None:
    review_push()


review_pull_job = dg.define_asset_job(
    "review_pull",
    selection=dg.AssetSelection.assets(VERDICTS).downstream() & dg.AssetSelection.groups(GROUP),
    partitions_def=batches,
    config={"ops": {VERDICTS: {"config": {"pull": True}}}},
    description="Read a batch's verdicts from the annotation tool; re-run its pair models.",
)


def reviewed_projects(storage: Storage) -> dict[str, list[str]]:
    """Each batch with review tasks -> its projects in the tool."""
    frame = storage.query(
        "SELECT DISTINCT batch_id, project_id FROM review_tasks ORDER BY batch_id, project_id"
    )
    projects: dict[str, list[str]] = {}
    for batch_id, project_id in frame.rows():
        projects.setdefault(batch_id, []).append(project_id)
    return projects


@dg.sensor(
    job=review_pull_job,
    minimum_interval_seconds=POLL_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def review_sensor(
    context: dg.SensorEvaluationContext, prefgen: PrefgenResource
) -> dg.SensorResult | dg.SkipReason:
    """A `review_pull` run for each reviewed batch whose annotations changed since the last
    tick (the first tick sees every reviewed batch as changed)."""
    config = prefgen.config()
    path = config.resolve(config.paths.duckdb_path)
    if not path.exists():
        return dg.SkipReason(f"{path}: no DuckDB file yet")
    try:
        projects = reviewed_projects(Storage(path, lock_timeout_s=LOCK_WAIT_S))
    except StorageUnavailable as err:
        return dg.SkipReason(f"{err}; tried again next tick")
    if not projects:
        return dg.SkipReason("no batch has review tasks (send some with the review_push job)")
    try:
        client = client_from_env(config.review.url, config.review.token_env, HTTP_TIMEOUT_S)
        current = {
            batch_id: " ".join(client.project_signature(project) for project in ids)
            for batch_id, ids in projects.items()
        }
    except ReviewProblem as err:
        return dg.SkipReason(str(err))
    seen: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    changed = [batch_id for batch_id, mark in current.items() if seen.get(batch_id) != mark]
    cursor = json.dumps({**seen, **current}, sort_keys=True)
    if not changed:
        return dg.SensorResult(skip_reason="no new or changed verdicts", cursor=cursor)
    return dg.SensorResult(
        run_requests=[
            batch_request(
                context.repository_def,
                batch_id,
                f"review-pull:{batch_id}:{current[batch_id]}",
                review_pull_job.selection,
            )
            for batch_id in changed
        ],
        cursor=cursor,
    )
