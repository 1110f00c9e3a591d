"""What starts runs: the inbox sensor, the assets' automation conditions, the catch-up
schedule.

* The sensor only lists the inbox (sensors time out after 60 s): each new or changed file
  that has stopped changing becomes a partition and a run of every stage, unless the
  instance already has that batch's pairs from after the file was written (`prefgen run`
  records its runs in the same instance). Its runs, and the schedule's, name the batch's
  assets (`batch_request`). An entry that can never be a batch (an unsupported type, a name
  Dagster cannot key, a link out of the inbox) is moved to `<inbox>/.refused/` with its
  reason (`input/inbox.py`), so no tick looks at it again.
* `STAGE_CONDITION` re-runs a batch's asset when its code version (its own settings, see
  `versions`) changes or an input it reads is updated, so a changed config re-runs only the
  stages it affects and those after them, and new human verdicts only the pair models.
* The schedule asks the Dagster instance, not DuckDB, which batches are behind: failed runs,
  missing pairs, files newer than their pairs, pairs made with other settings.
"""

import json
import time
from pathlib import Path

import dagster as dg

from prefgen_dagster.defs.assets import GROUP
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.report import CHECK_FAILED_ERROR
from prefgen_dagster.defs.resources import PrefgenResource
from prefgen_dagster.input.datasets import watched_into_inbox
from prefgen_dagster.input.inbox import move_aside, scan_inbox, was_refused
from prefgen_dagster.stages import INPUT_TABLES, pipeline_hash

PAIRS_KEY = dg.AssetKey("dpo_pairs")
PARTITION_TAG = "dagster/partition"

# Human verdicts are an input a batch may never have (`defs/verdicts.py`): a batch run made
# before they existed, or the review pull's first verdicts, must not hold the pair models back.
OPTIONAL_INPUTS = dg.AssetSelection.assets(*INPUT_TABLES)
STAGE_CONDITION = (
    (
        dg.AutomationCondition.code_version_changed() | dg.AutomationCondition.any_deps_updated()
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing().ignore(OPTIONAL_INPUTS)
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("re-run when its settings or its inputs change")
# Not `eager()`: that waits while any batch's pairs are missing, and one failed batch would
# then hold every other batch's export back.
EXPORT_CONDITION = (
    dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()
).with_label("export after any batch's pairs change")

batch_job = dg.define_asset_job(
    "prefgen_batch",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=batches,
    description="All stages for one instruction batch, with its SQL checks.",
)


# Evaluates STAGE_CONDITION and EXPORT_CONDITION; on by default, like the other two, so
# batches flow as soon as `dagster dev` (webserver and daemon) runs.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "prefgen_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


@dg.sensor(
    job=batch_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING
)
def inbox_sensor(context: dg.SensorEvaluationContext, prefgen: PrefgenResource) -> dg.SensorResult:
    """A partition and a run for each new or rewritten file in the inbox. A new revision
    of a watched dataset (`input.datasets`) is written there first, as a new file."""
    config = prefgen.config()
    seen: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    inbox = config.resolve(config.paths.inbox_dir)
    made, problems = watched_into_inbox(config, inbox)
    for file in made:
        context.log.info(f"{file.name}: a new dataset revision, a batch once it settles")
    for problem in problems:
        context.log.warning(problem)
    scan = scan_inbox(inbox, time.time())
    for name, reason in scan.refused.items():
        try:
            moved = move_aside(inbox, name, reason)
        except OSError as err:  # looked at again next tick
            context.log.warning(f"{inbox / name}: {reason}; cannot move it aside: {err}")
        else:
            context.log.warning(f"{inbox / name}: {reason}; moved to {moved}")
    current = scan.settled
    changed = [name for name, stamp in current.items() if seen.get(name) != stamp]
    known = set(context.instance.get_dynamic_partitions(batches.name))
    new_keys = [name for name in changed if name not in known]
    # A batch `prefgen run` already made from this very file (the same instance) is done.
    to_run = [
        name
        for name in changed
        if name not in known or not pairs_newer_than(context.instance, name, current[name][0])
    ]
    return dg.SensorResult(
        run_requests=[
            batch_request(context.repository_def, name, f"{name}@{current[name][0]}")
            for name in to_run
        ],
        dynamic_partitions_requests=[batches.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({**seen, **current}, sort_keys=True),
    )


def batch_request(
    repository: dg.RepositoryDefinition | None,
    batch_id: str,
    run_key: str,
    assets: dg.AssetSelection = batch_job.selection,
) -> dg.RunRequest:
    """A run of every stage (and check) for one batch (or of `assets`, the selection of the
    sensor's job) that names its assets. Dagster's
    automation ignores an input's update made by a run that also targets the asset
    (`executed_with_root_target`), but a job's run without a named selection targets none
    by that rule: a tick that evaluated `candidate_pairs` while its materialization landed
    requested the pairs a second time. Without the repository (a bare test context) the run
    is the whole job, as before."""
    selection = sorted(assets.resolve(repository.asset_graph)) if repository else None
    return dg.RunRequest(partition_key=batch_id, run_key=run_key, asset_selection=selection)


def latest_pairs(instance: dg.DagsterInstance, batch_id: str) -> dg.EventLogRecord | None:
    """The batch's newest `dpo_pairs` materialization, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PAIRS_KEY, asset_partitions=[batch_id]), limit=1
    ).records
    return records[0] if records else None


def pairs_newer_than(instance: dg.DagsterInstance, batch_id: str, mtime_ns: int) -> bool:
    """Whether the batch's `dpo_pairs` were materialized after the file was last written."""
    record = latest_pairs(instance, batch_id)
    return record is not None and record.timestamp > mtime_ns / 1e9


def last_run_failed(instance: dg.DagsterInstance, batch_id: str) -> bool:
    """Whether the newest run for this batch failed for a reason of its own (an engine
    error, an interrupt, a crash). A run that failed only because blocking checks held the
    batch back is not counted: running it again gives the same verdict until its file or the
    settings change, which the other rules of `stale_batches` catch."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PARTITION_TAG: batch_id}), limit=1)
    if not runs or runs[0].status != dg.DagsterRunStatus.FAILURE:
        return False
    failures = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return not failures or any(
        entry.dagster_event.event_specific_data.error.cls_name != CHECK_FAILED_ERROR
        for entry in failures
    )


def stale_batches(instance: dg.DagsterInstance, current_hash: str, inbox: Path) -> list[str]:
    """Batches whose last run failed, or whose pairs are missing, made with other settings,
    or older than their file. Re-running them is cheap: finished LLM calls are cached. A
    batch whose file was refused at ingest and moved aside is not: it would fail again."""
    stale = []
    for key in instance.get_dynamic_partitions(batches.name):
        if was_refused(inbox, key):  # the same verdict until a file takes its place
            continue
        if last_run_failed(instance, key):
            stale.append(key)
            continue
        record = latest_pairs(instance, key)
        if record is None:
            stale.append(key)
            continue
        materialization = record.asset_materialization
        made_with = materialization.metadata.get("pipeline_hash") if materialization else None
        source = inbox / key
        newer_file = source.exists() and source.stat().st_mtime > record.timestamp
        if made_with is None or made_with.value != current_hash or newer_file:
            stale.append(key)
    return stale


@dg.schedule(
    job=batch_job, cron_schedule="0 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
)
def catch_up_schedule(context: dg.ScheduleEvaluationContext, prefgen: PrefgenResource):
    """Every hour: re-run each batch whose last run failed (not merely held back by its
    checks) or that is not up to date with its file and the settings."""
    config = prefgen.config()
    inbox = config.resolve(config.paths.inbox_dir)
    keys = stale_batches(context.instance, pipeline_hash(config), inbox)
    if not keys:
        return dg.SkipReason("every batch is up to date")
    stamp = context.scheduled_execution_time.isoformat()
    return [batch_request(context.repository_def, key, f"catch-up:{key}:{stamp}") for key in keys]
