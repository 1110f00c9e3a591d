"""Asset checks made from `dbt_like_sql/checks/*.sql`: one file, one check, no Python."""

import warnings

import dagster as dg

from prefgen_dagster import metadata
from prefgen_dagster.partitions import batches
from prefgen_dagster.resources import PrefgenResource
from prefgen_dagster.sql_layer import SqlCheck, SqlProject


def build_sql_check(check: SqlCheck, project: SqlProject) -> dg.AssetChecksDefinition:
    """An asset check that runs the file's SQL for the batch: zero rows means it passed."""
    other_assets = sorted({project.table_asset(ref) for ref in check.refs} - {check.asset})
    severity = dg.AssetCheckSeverity[check.severity]

    @dg.asset_check(
        asset=check.asset,
        name=check.name,
        description=f"[{check.severity}{', blocking' if check.blocking else ''}"
        f"{', filters pairs' if check.filter else ''}] {check.description}",
        blocking=check.blocking,
        additional_deps=other_assets,
        partitions_def=batches,
        metadata={"sql_file": str(check.path), "filter": check.filter, "severity": check.severity},
    )
    def _check(context: dg.AssetCheckExecutionContext, prefgen: PrefgenResource):
        config, storage = prefgen.open()
        batch_id = context.partition_key
        offending = storage.query(*check.render(batch_id, config.sql_vars()))
        table = project.asset_table(check.asset)
        total = storage.query(f"SELECT count(*) AS n FROM {table} WHERE batch_id = ?", [batch_id])
        checked = int(total["n"][0])
        storage.record_check(
            {
                "batch_id": batch_id,
                "check_name": check.name,
                "asset": check.asset,
                "severity": check.severity,
                "blocking": check.blocking,
                "passed": offending.is_empty(),
                "failing_rows": offending.height,
            }
        )
        return dg.AssetCheckResult(
            passed=offending.is_empty(),
            severity=severity,
            metadata={
                "failing_rows": offending.height,
                "checked_rows": checked,
                "failure_rate": round(offending.height / checked, 4) if checked else 0.0,
                "filters_pairs": check.filter,
                "sample_rows": dg.MetadataValue.md(metadata.markdown_table(offending, 10)),
            },
        )

    return _check


def build_sql_checks(project: SqlProject) -> list[dg.AssetChecksDefinition]:
    # Partitioned asset checks are a Dagster preview feature; the warning is known and noisy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [build_sql_check(check, project) for check in project.checks]
