"""Asset checks made from `dbt_like_sql/checks/*.sql`: one file, one check, no Python.

The checks of one asset run as one step (a multi-asset check): a check is a query or two,
and a step of its own cost more in Dagster's events than its queries took. Each check is
still its own spec, evaluation, severity and blocking flag in the UI and the run's events.
"""

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from prefgen_dagster.defs import metadata
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import PrefgenResource
from prefgen_dagster.sql.project import SqlCheck, SqlProject
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.stages import asset_of
from prefgen_dagster.storage.store import Storage


def check_spec(check: SqlCheck, values: dict[str, Any]) -> dg.AssetCheckSpec:
    """The check as Dagster shows it. `values` are the config's SQL vars; its description
    shows the ones the check reads."""
    other_assets = sorted({asset_of(ref) for ref in check.refs} - {check.asset})
    return dg.AssetCheckSpec(
        check.name,
        asset=check.asset,
        description=f"[{check.severity}{', blocking' if check.blocking else ''}] "
        f"{check.description}{runs_with(check, values)}",
        blocking=check.blocking,
        additional_deps=other_assets,
        partitions_def=batches,
        metadata={"sql_file": str(check.path), "severity": check.severity},
    )


@dataclass(frozen=True)
class PythonCheck:
    """A check written in Python (`defs/assets.python_checks`): run in its asset's checks
    step, after the SQL ones."""

    spec: dg.AssetCheckSpec
    run: Callable[[dg.AssetCheckExecutionContext, PrefgenResource], dg.AssetCheckResult]


def build_asset_checks(
    asset: str,
    checks: list[SqlCheck],
    values: dict[str, Any],
    python: Sequence[PythonCheck] = (),
) -> dg.AssetChecksDefinition:
    """One step that runs every check of `asset` for the batch (a SQL check: zero rows means
    passed); a step per check cost more in Dagster's events than its queries took."""

    @dg.multi_asset_check(
        name=f"{asset}_checks",
        specs=[*(check_spec(check, values) for check in checks)] + [check.spec for check in python],
    )
    def _checks(context: dg.AssetCheckExecutionContext, prefgen: PrefgenResource):
        config, storage = prefgen.open()
        batch_id = context.partition_key
        with storage.session():  # one connection for every check's queries
            for check in checks:
                yield run_check(check, storage, batch_id, sql_vars(config))
        for extra in python:  # outside the session: one may plan the batch (seconds)
            yield extra.run(context, prefgen)

    return _checks


def run_check(
    check: SqlCheck, storage: Storage, batch_id: str, values: dict[str, Any]
) -> dg.AssetCheckResult:
    """Run one check's SQL for the batch, record the outcome in `check_results`."""
    offending = storage.query(*check.render(batch_id, values))
    # An asset's rows are in the table of its name (`stages.Stage`).
    total = storage.query(f"SELECT count(*) AS n FROM {check.asset} WHERE batch_id = ?", [batch_id])
    checked = int(total["n"][0])
    reason = failure_reason(offending)
    storage.record_check(
        {
            "batch_id": batch_id,
            "check_name": check.name,
            "asset": check.asset,
            "severity": check.severity,
            "blocking": check.blocking,
            "passed": offending.is_empty(),
            "failing_rows": offending.height,
            "reason": reason,
        }
    )
    return dg.AssetCheckResult(
        asset_key=check.asset,
        check_name=check.name,
        passed=offending.is_empty(),
        severity=dg.AssetCheckSeverity[check.severity],
        metadata={
            "failing_rows": offending.height,
            "checked_rows": checked,
            "failure_rate": round(offending.height / checked, 4) if checked else 0.0,
            **({"reason": reason} if reason else {}),
            "sample_rows": dg.MetadataValue.md(metadata.markdown_table(offending, 10)),
        },
    )


def failure_reason(offending: pl.DataFrame) -> str | None:
    """The one-line reason a check gives for its first offending row (a `reason` column),
    with a count of the others."""
    if offending.is_empty() or "reason" not in offending.columns:
        return None
    first = offending["reason"][0]
    more = offending.height - 1
    return f"{first} (and {more} more)" if more else first


def runs_with(check: SqlCheck, values: dict[str, Any]) -> str:
    """The values of the vars a check reads, as a sentence for its description: the header
    names a threshold (`checks.max_parse_failure_rate`), this says what it is set to."""
    if not check.variables:
        return ""
    shown = ", ".join(f"{name} = {json.dumps(values.get(name))}" for name in check.variables)
    return f"\n\nRuns with {shown}."


def build_checks(
    project: SqlProject, values: dict[str, Any], python: Sequence[PythonCheck] = ()
) -> list[dg.AssetChecksDefinition]:
    """One multi-asset check per asset that has checks, in the project's order: its SQL
    checks and its Python ones."""
    by_asset: dict[str, list[SqlCheck]] = {}
    for check in project.checks:
        by_asset.setdefault(check.asset, []).append(check)
    extra: dict[str, list[PythonCheck]] = {}
    for check in python:
        extra.setdefault(check.spec.asset_key.to_user_string(), []).append(check)
        by_asset.setdefault(check.spec.asset_key.to_user_string(), [])
    # Partitioned asset checks are a Dagster preview feature; the warning is known and noisy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            build_asset_checks(asset, checks, values, extra.get(asset, ()))
            for asset, checks in by_asset.items()
        ]
