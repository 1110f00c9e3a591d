"""What `prefgen run` prints about a finished Dagster run: a table of the stages, the
checks, the label quality, and why a run failed, read from the run's results and DuckDB."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prefgen_dagster.input.validate import SEEN_BEFORE
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.stages import STAGES

if TYPE_CHECKING:
    import dagster as dg


def held_back_only(batch) -> bool:
    """The run's only failures are blocking checks: every stage ran, the gates said no."""
    failed_checks = [
        e
        for e in batch.get_asset_check_evaluations()
        if not e.passed and e.severity.value == "ERROR"
    ]
    return bool(failed_checks) and not _step_failures(batch)


INTERRUPTED_ERROR = "DagsterExecutionInterruptedError"
# The step error of a failed blocking check: the batch was held back, nothing broke.
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"
# Step errors that are not the step's own: a failed blocking check (its check line says so)
# and an interrupt (Ctrl-C or SIGTERM; `prefgen` says so in one line).
_NOT_OWN_ERRORS = (CHECK_FAILED_ERROR, INTERRUPTED_ERROR)


def interrupted(result) -> bool:
    """A step of the run was stopped by Ctrl-C or SIGTERM."""
    return any(
        event.event_type_value == "STEP_FAILURE"
        and event.event_specific_data.error.cls_name == INTERRUPTED_ERROR
        for event in result.all_events
    )


def run_warnings(instance, result) -> list[str]:
    """What the run's steps logged at WARNING or above, one line each (`prefgen` runs keep
    Dagster's console quiet and print these after the run)."""
    return [
        f"{entry.step_key or 'run'}: {' '.join(entry.user_message.split())}"
        for entry in instance.all_logs(result.run_id)
        if entry.level >= logging.WARNING and not entry.is_dagster_event
    ]


def _step_failures(batch) -> list:
    """Steps that failed for a reason of their own."""
    return [
        event
        for event in batch.all_events
        if event.event_type_value == "STEP_FAILURE"
        and event.event_specific_data.error.cls_name not in _NOT_OWN_ERRORS
    ]


def print_summary(batch, export, storage, batch_id: str, elapsed: float) -> None:
    """Rows, engine calls, cache hits, requests behind kept rows and failed requests per
    stage, then the checks."""

    counts = storage.table_counts(batch_id)
    stage_tables = [(stage.asset, table) for stage in STAGES for table in stage.tables]
    stage_tables.append(("dpo_pairs", "dpo_pairs"))
    status = "succeeded" if batch.success else "FAILED"
    if not batch.success and held_back_only(batch):
        status = "held back by its blocking checks"
    print(f"\nbatch {batch_id}: {status} in {elapsed:.1f} s")
    print(
        f"{'stage':<22}{'table':<22}{'rows':>8}{'engine calls':>14}{'cache hits':>12}"
        f"{'reused':>8}{'failed':>8}"
    )
    for stage, table in stage_tables:
        meta = _materialization_metadata(batch, stage)
        figures = [
            f"{meta.get(name, '')!s:>{width}}"
            for name, width in (
                ("llm_engine_calls", 14),
                ("llm_cache_hits", 12),
                ("llm_reused", 8),
                ("llm_failed", 8),
            )
        ]
        print(f"{stage:<22}{table:<22}{counts[table]:>8}{''.join(figures)}")
    seen = storage.query(
        "SELECT count(*) FROM rejected_inputs WHERE batch_id = ? AND starts_with(reason, ?)",
        [batch_id, SEEN_BEFORE],
    ).item()
    if seen:
        print(f"skipped as seen in earlier batches: {seen}")
    for evaluation in batch.get_asset_check_evaluations():
        print(check_line(evaluation))
    for event in _step_failures(batch):
        print(
            f"step {event.step_key} failed: {step_error_message(event.event_specific_data.error)}"
        )
    if export is not None:
        meta = _materialization_metadata(export, "preference_dataset")
        print(f"preference_dataset: {meta.get('dagster/row_count', 0)} pairs exported")


def check_line(evaluation: dg.AssetCheckEvaluation) -> str:
    """A check's line in the run summary; a failed check that gives a reason (its SQL's
    `reason` column) says it on the next line, so a held-back batch says why."""
    status = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
    rows = evaluation.metadata["failing_rows"].value
    line = f"check {evaluation.check_name:<28}{status:<16} offending rows: {rows}"
    reason = evaluation.metadata.get("reason")
    if not evaluation.passed and reason is not None:
        line += f"\n      because: {reason.value}"
    return line


def label_quality_report(storage, batch_id: str, config) -> str:
    """The batch's label quality in a few lines: the judge's calibration, the pairs made,
    exported, dropped or held back and why, and a few held pairs to look at."""
    from prefgen_dagster.export.dataset import blocking_results, pairs_with_text
    from prefgen_dagster.judge.calibration import calibration_lines
    from prefgen_dagster.judge.human_agreement import agreement_lines, read_agreement

    lines = ["Label quality"]
    tables = storage.column_types()
    if "candidate_pairs" not in tables:  # no batch got as far as pairing yet
        return "\n".join([*lines, "  no pairs: the batch did not reach pairing"])
    calibration = storage.query("SELECT * FROM judge_calibration WHERE batch_id = ?", [batch_id])
    if config.judge is None:
        lines.append("  no judge: pairs come from the rule " + config.pairing.strategy)
    names = config.names_by_identity()
    lines += [f"  {line}" for line in calibration_lines(calibration, names)]
    if config.judge is not None and not sql_vars(config)["canaries_enabled"]:
        lines.append("  WARNING: canaries are off, so the judge's accuracy is not measured")
    human = agreement_lines(read_agreement(storage, [batch_id]).to_dicts(), names)
    lines += ["  human verdicts:", *(f"    {line}" for line in human)] if human else []
    pairs = pairs_with_text(storage, batch_id)
    _, held = blocking_results(storage, batch_id)
    lines.append(f"  pairs: {pairs.height} ({config.pairing.strategy})")
    if held:
        lines.append(f"    held back: all {pairs.height}, because")
        lines += [f"      {reason}" for reason in held]
    else:
        lines.append(f"    exported: {pairs.height}")
    dropped = storage.query(
        "SELECT split_part(dropped_because, ':', 1) AS rule, count(*) AS n FROM candidate_pairs "
        "WHERE batch_id = ? AND dropped_because IS NOT NULL GROUP BY 1 ORDER BY 1",
        [batch_id],
    )
    lines += [f"    dropped ({row['rule']}): {row['n']}" for row in dropped.to_dicts()]
    flipped = storage.query(
        "SELECT count(*) FROM candidate_pairs WHERE batch_id = ? "
        "AND starts_with(human_review, 'flipped')",
        [batch_id],
    ).item()
    if flipped:
        lines.append(f"    flipped by people's verdicts: {flipped}")
    if held and pairs.height:
        lines.append("  pairs it would have made (first 3):")
        for row in pairs.head(3).iter_rows(named=True):
            lines.append(f"    instruction: {_clip(row['instruction'])}")
            for side in ("chosen", "rejected"):
                rating = row[f"{side}_rating"]
                score = "unrated" if rating is None else f"{rating:.1f}"
                model = names.get(row[f"{side}_model"], row[f"{side}_model"])
                lines.append(
                    f"      {side:<8} ({row[f'{side}_origin']}, {model}, {score}): "
                    f"{_clip(row[f'{side}_text'])}"
                )
        if config.pairing.judge_decides():
            lines.append(
                "  Without a trustworthy judge, pairing.strategy rule_stronger_model or "
                "rule_evolved_over_original makes pairs by rule."
            )
    return "\n".join(lines)


def _clip(text: str | None, width: int = 90) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def step_error_message(error) -> str:
    """The step's own error message, not Dagster's "error occurred while executing op"."""
    while error.cls_name and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error.message.strip()


def _materialization_metadata(result, asset_name: str) -> dict:
    events = result.asset_materializations_for_node(asset_name)
    if not events:
        return {}
    return {key: getattr(value, "value", value) for key, value in events[-1].metadata.items()}
