"""The final dataset: every batch whose blocking checks passed, in TRL's conversational format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from prefgen_dagster.storage.store import Storage

# The rating scale's width (1-5): a margin divided by it lies in [0, 1].
RATING_RANGE = 4.0

_PAIRS_WITH_TEXT = """
SELECT p.*, i.instruction, i.system_prompt, i.source, i.source_row,
       c.text AS chosen_text, r.text AS rejected_text
FROM dpo_pairs AS p
JOIN instructions AS i USING (batch_id, instruction_id)
JOIN candidates AS c ON c.batch_id = p.batch_id AND c.completion_id = p.chosen_completion_id
JOIN candidates AS r ON r.batch_id = p.batch_id AND r.completion_id = p.rejected_completion_id
WHERE p.batch_id = ?
ORDER BY p.instruction_id
"""


def exportable_batches(
    storage: Storage, blocking: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """(batches to export, {batch held back: why}): a batch goes out only if every blocking
    check has a passing result for it; the reasons are the failed checks' own one-liners."""
    batches = storage.query("SELECT DISTINCT batch_id FROM dpo_pairs ORDER BY 1")["batch_id"]
    results = storage.query(
        "SELECT batch_id, check_name, passed, reason FROM check_results WHERE check_name IN "
        "(SELECT unnest(?::VARCHAR[]))",
        [blocking],
    )
    by_key = {(r["batch_id"], r["check_name"]): r for r in results.to_dicts()}
    ready, held = [], {}
    for batch_id in batches:
        reasons = []
        for name in blocking:
            result = by_key.get((batch_id, name))
            if result is None:
                reasons.append(f"{name}: not run yet")
            elif not result["passed"]:
                reasons.append(f"{name}: {result['reason'] or 'failed'}")
        if reasons:
            held[batch_id] = reasons
        else:
            ready.append(batch_id)
    return ready, held


def blocking_results(storage: Storage, batch_id: str) -> tuple[bool, list[str]]:
    """(whether any blocking check has run for the batch, "check: reason" for each that
    failed)."""
    results = storage.query(
        "SELECT check_name, passed, reason FROM check_results "
        "WHERE batch_id = ? AND blocking ORDER BY check_name",
        [batch_id],
    ).to_dicts()
    failed = [f"{r['check_name']}: {r['reason'] or 'failed'}" for r in results if not r["passed"]]
    return bool(results), failed


def collect_pairs(storage: Storage, blocking: list[str]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The pairs of every batch that passed its blocking checks, with their texts, and what
    was left out and why (`dpo_pairs` already holds only the final pairs)."""
    ready, held = exportable_batches(storage, blocking)
    frames = [pairs_with_text(storage, batch_id) for batch_id in ready]
    pairs = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    dropped = (
        storage.query(
            "SELECT count(*) AS n FROM candidate_pairs WHERE dropped_because IS NOT NULL "
            "AND batch_id IN (SELECT unnest(?::VARCHAR[]))",
            [ready],
        )["n"][0]
        if ready
        else 0
    )
    summary = {
        "batches_exported": ready,
        "batches_held_back": list(held),
        "held_back_reasons": held,
        "pairs_dropped": int(dropped),
    }
    return pairs, summary


def pairs_with_text(storage: Storage, batch_id: str) -> pl.DataFrame:
    """A batch's pairs with their instruction and the chosen and rejected texts."""
    return storage.query(_PAIRS_WITH_TEXT, [batch_id])


def held_back_pairs(storage: Storage, held: dict[str, list[str]]) -> pl.DataFrame:
    """The pairs of held-back batches, with their texts and why the batch was held: what
    would have been exported, for a person to look at (never trained on)."""
    frames = [
        pairs_with_text(storage, batch_id).with_columns(
            pl.lit("; ".join(reasons)).alias("held_back_because")
        )
        for batch_id, reasons in held.items()
    ]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def to_trl_records(
    pairs: pl.DataFrame, model_names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """TRL's conversational preference format plus the columns that trace each pair. Models
    are named as the config names them (`model_names`: identity -> name), never by a local
    path; `margin_normalized` is the margin over the 1-5 scale's width."""
    names = model_names or {}
    records = []
    for row in pairs.iter_rows(named=True):
        prompt = (
            [{"role": "system", "content": row["system_prompt"]}] if row["system_prompt"] else []
        )
        prompt.append({"role": "user", "content": row["instruction"]})
        records.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": row["chosen_text"] or ""}],
                "rejected": [{"role": "assistant", "content": row["rejected_text"] or ""}],
                "score_chosen": row["chosen_rating"],
                "score_rejected": row["rejected_rating"],
                "margin": row["margin"],
                "margin_normalized": _normalized(row["margin"]),
                "chosen_model": names.get(row["chosen_model"], row["chosen_model"]),
                "rejected_model": names.get(row["rejected_model"], row["rejected_model"]),
                "chosen_origin": row["chosen_origin"],
                "rejected_origin": row["rejected_origin"],
                "judge_agreement": row["judge_agreement"],
                "pair_id": row["pair_id"],
                "instruction_id": row["instruction_id"],
                "chosen_completion_id": row["chosen_completion_id"],
                "rejected_completion_id": row["rejected_completion_id"],
                "batch_id": row["batch_id"],
                "source": row["source"],
                "source_row": row["source_row"],
            }
        )
    return records


def _normalized(margin: float | None) -> float | None:
    return None if margin is None else margin / RATING_RANGE


def write_dataset(
    records: list[dict[str, Any]], export_dir: Path, card: str, held: pl.DataFrame
) -> dict[str, str]:
    """Save as a `datasets` dataset on disk, as Parquet, and with a README card; the pairs
    of held-back batches go to `held_back_pairs.parquet` beside it (not part of the
    dataset)."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    export_dir.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.from_list(records) if records else Dataset.from_dict({"prompt": []})
    dataset_dir = export_dir / "dataset"
    # datasets writes no shard for zero rows, and then cannot load what it saved.
    dataset.save_to_disk(str(dataset_dir), num_shards=None if records else 1)
    parquet = export_dir / "preference_dataset.parquet"
    dataset.to_parquet(str(parquet))
    (export_dir / "README.md").write_text(card, encoding="utf-8")
    held_path = export_dir / "held_back_pairs.parquet"
    held.write_parquet(held_path)
    return {"dataset_dir": str(dataset_dir), "parquet": str(parquet), "held_back": str(held_path)}
