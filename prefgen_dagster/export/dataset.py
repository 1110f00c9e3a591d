"""The final dataset: every batch whose blocking checks passed, in TRL's conversational format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from prefgen_dagster.ids import stable_hash
from prefgen_dagster.judge.human_agreement import read_agreement
from prefgen_dagster.storage.store import Storage
from prefgen_dagster.text.conversation import prompt_messages

# The rating scale's width (1-5): a margin divided by it lies in [0, 1].
RATING_RANGE = 4.0

_PAIRS_WITH_TEXT = """
SELECT p.*, i.instruction, i.system_prompt, i.history, i.source, i.source_row, i.input_fields,
       c.text AS chosen_text, r.text AS rejected_text,
       cg.system_prompt AS chosen_generation_system_prompt,
       rg.system_prompt AS rejected_generation_system_prompt,
       j.judges, j.judge_modes
FROM dpo_pairs AS p
JOIN instructions AS i USING (batch_id, instruction_id)
JOIN candidates AS c ON c.batch_id = p.batch_id AND c.completion_id = p.chosen_completion_id
JOIN candidates AS r ON r.batch_id = p.batch_id AND r.completion_id = p.rejected_completion_id
LEFT JOIN completions AS cg
  ON cg.batch_id = p.batch_id AND cg.completion_id = coalesce(c.root_completion_id, c.completion_id)
LEFT JOIN completions AS rg
  ON rg.batch_id = p.batch_id AND rg.completion_id = coalesce(r.root_completion_id, r.completion_id)
LEFT JOIN (
    SELECT batch_id, completion_id, list(DISTINCT judge ORDER BY judge) AS judges,
           list(DISTINCT mode ORDER BY mode) AS judge_modes
    FROM ratings WHERE purpose = 'label' AND parse_status = 'ok'
    GROUP BY ALL
) AS j ON j.batch_id = p.batch_id AND j.completion_id = p.chosen_completion_id
WHERE p.batch_id = ?
ORDER BY p.instruction_id, p.pair_id
"""
# The export's splits, in the order the card and the Hub list them.
SPLITS = ("train", "test")
# A batch whose labels came from other judge settings than the current ones is held back
# with this reason: one export, one judge (re-running its ratings brings it back).
OTHER_JUDGE = "rated with other judge settings"


def exportable_batches(
    storage: Storage, blocking: list[str], judge_settings: str | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """(batches to export, {batch held back: why}): a batch goes out only if every blocking
    check has a passing result for it; the reasons are the failed checks' own one-liners.
    With `judge_settings` (the current judge's), a batch whose labels were rated under other
    judge settings is held back too, so one export never mixes judges."""
    batches = storage.query("SELECT DISTINCT batch_id FROM dpo_pairs ORDER BY 1")["batch_id"]
    results = storage.query(
        "SELECT batch_id, check_name, passed, reason FROM check_results WHERE check_name IN "
        "(SELECT unnest(?::VARCHAR[]))",
        [blocking],
    )
    by_key = {(r["batch_id"], r["check_name"]): r for r in results.to_dicts()}
    other_judges = (
        set(
            storage.query(
                "SELECT DISTINCT batch_id FROM ratings "
                "WHERE purpose = 'label' AND judge_settings <> ?",
                [judge_settings],
            )["batch_id"]
        )
        if judge_settings
        else set()
    )
    ready, held = [], {}
    for batch_id in batches:
        reasons = []
        for name in blocking:
            result = by_key.get((batch_id, name))
            if result is None:
                reasons.append(f"{name}: not run yet")
            elif not result["passed"]:
                reasons.append(f"{name}: {result['reason'] or 'failed'}")
        if batch_id in other_judges:
            reasons.append(f"{OTHER_JUDGE} (re-run its ratings to export it)")
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


def collect_pairs(
    storage: Storage, blocking: list[str], judge_settings: str | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The pairs of every batch that passed its blocking checks (and was rated by the
    current judge, see `exportable_batches`), with their texts, and what was left out and
    why (`dpo_pairs` already holds only the final pairs)."""
    ready, held = exportable_batches(storage, blocking, judge_settings)
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
        "human_agreement": read_agreement(storage, ready).to_dicts(),
        "input_datasets": input_datasets(storage, ready),
    }
    return pairs, summary


def input_datasets(storage: Storage, batch_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Batch -> the dataset split its file was made from (`input/datasets.py`), for the
    batches that came from one."""
    if not batch_ids:
        return {}
    rows = storage.query(
        "SELECT batch_id, dataset FROM batches WHERE dataset IS NOT NULL "
        "AND batch_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY batch_id",
        [batch_ids],
    )
    return {row["batch_id"]: json.loads(row["dataset"]) for row in rows.iter_rows(named=True)}


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
    pairs: pl.DataFrame, model_names: dict[str, str] | None = None, test_fraction: float = 0.0
) -> list[dict[str, Any]]:
    """TRL's conversational preference format plus the columns that trace each pair. Models
    and judges are named as the config names them (`model_names`: identity -> name), never
    by a local path; `margin_normalized` is the margin over the 1-5 scale's width; `split`
    puts about `test_fraction` of the instructions (all their pairs) in `test`; the input
    row's own fields follow as `input_<field>` columns."""
    names = model_names or {}
    inputs = input_columns(pairs["input_fields"].to_list() if pairs.height else [])
    records = []
    for index, row in enumerate(pairs.iter_rows(named=True)):
        records.append(
            {
                "prompt": prompt_messages(row),
                "chosen": [{"role": "assistant", "content": row["chosen_text"] or ""}],
                "rejected": [{"role": "assistant", "content": row["rejected_text"] or ""}],
                "score_chosen": row["chosen_rating"],
                "score_rejected": row["rejected_rating"],
                "margin": row["margin"],
                "margin_normalized": _normalized(row["margin"]),
                "split": split_of(row["instruction_id"], test_fraction),
                "chosen_model": names.get(row["chosen_model"], row["chosen_model"]),
                "rejected_model": names.get(row["rejected_model"], row["rejected_model"]),
                "chosen_origin": row["chosen_origin"],
                "rejected_origin": row["rejected_origin"],
                "chosen_generation_system_prompt": row["chosen_generation_system_prompt"],
                "rejected_generation_system_prompt": row["rejected_generation_system_prompt"],
                "judges": [names.get(judge, judge) for judge in row["judges"] or []],
                "judge_mode": ",".join(row["judge_modes"] or []) or None,
                "judge_agreement": row["judge_agreement"],
                "human_review": row["human_review"],
                "strategy": row["strategy"],
                "settings_hash": row["settings_hash"],
                "pair_id": row["pair_id"],
                "instruction_id": row["instruction_id"],
                "chosen_completion_id": row["chosen_completion_id"],
                "rejected_completion_id": row["rejected_completion_id"],
                "batch_id": row["batch_id"],
                "source": row["source"],
                "source_row": row["source_row"],
                **{column: values[index] for column, values in inputs.items()},
            }
        )
    return records


def split_of(instruction_id: str, test_fraction: float) -> str:
    """`test` or `train`, from a hash of the instruction: the same instruction always lands
    in the same split, whatever else is exported, and its pairs never straddle the two."""
    share = int(stable_hash(["split", instruction_id], 8), 16) / 16**8
    return "test" if share < test_fraction else "train"


def input_columns(fields: list[str | None]) -> dict[str, list[Any]]:
    """The input rows' own fields (JSON objects, see `input.validate.input_fields`) as one
    `input_<field>` column each, over the union of fields (missing: None). A field whose
    values are not all of one scalar type is written as JSON text, so every column has one
    type."""
    rows = [json.loads(text) if text else {} for text in fields]
    names = sorted({name for row in rows for name in row})
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        kinds = {type(value) for value in values if value is not None}
        if kinds == {int, float}:
            values = [None if value is None else float(value) for value in values]
        elif len(kinds) > 1 or kinds - {str, int, float, bool}:
            values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
        columns[f"input_{name}"] = values
    return columns


def _normalized(margin: float | None) -> float | None:
    return None if margin is None else margin / RATING_RANGE


def write_dataset(
    records: list[dict[str, Any]], export_dir: Path, card: str, held: pl.DataFrame
) -> dict[str, str]:
    """Save as a `datasets` DatasetDict on disk (`train` and `test`, by each row's `split`),
    as one Parquet file of every row, and with a README card; the pairs of held-back batches
    go to `held_back_pairs.parquet` beside it (not part of the dataset)."""
    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()
    export_dir.mkdir(parents=True, exist_ok=True)
    everything = Dataset.from_list(records) if records else Dataset.from_dict({"prompt": []})
    splits = DatasetDict(
        {
            name: everything.filter(lambda row, name=name: row["split"] == name)
            if records
            else everything
            for name in SPLITS
        }
    )
    dataset_dir = export_dir / "dataset"
    # datasets writes no shard for zero rows, and then cannot load what it saved.
    splits.save_to_disk(
        str(dataset_dir),
        num_shards={name: 1 for name, split in splits.items() if len(split) == 0} or None,
    )
    parquet = export_dir / "preference_dataset.parquet"
    everything.to_parquet(str(parquet))
    (export_dir / "README.md").write_text(card, encoding="utf-8")
    held_path = export_dir / "held_back_pairs.parquet"
    held.write_parquet(held_path)
    return {"dataset_dir": str(dataset_dir), "parquet": str(parquet), "held_back": str(held_path)}
