"""One pair's (or one instruction's) whole story, read back from DuckDB: the instruction and
where it came from, every pooled completion and rewrite (with their LLM calls), every judge
answer (raw and parsed), every pair the rule considered and why it was kept or dropped, and
whether the batch was exported. `prefgen inspect ID` prints it."""

from __future__ import annotations

from typing import Any

from prefgen_dagster.export.dataset import blocking_results
from prefgen_dagster.storage.store import Storage
from prefgen_dagster.text.conversation import history_of

WIDTH = 100


class UnknownId(LookupError):
    """No pair, instruction or completion has the id asked for."""


def find_instruction(storage: Storage, some_id: str) -> tuple[str, str] | None:
    """(batch, instruction id) for a pair id, an instruction id or a completion id."""
    for table, column in (
        ("candidate_pairs", "pair_id"),
        ("instructions", "instruction_id"),
        ("candidates", "completion_id"),
    ):
        if table not in storage.column_types():
            continue
        found = storage.query(
            f"SELECT batch_id, instruction_id FROM {table} WHERE {column} = ? LIMIT 1", [some_id]
        )
        if found.height:
            return found["batch_id"][0], found["instruction_id"][0]
    return None


def story(storage: Storage, some_id: str) -> str:
    """The story of the instruction behind `some_id`, every hop on its own lines."""
    found = find_instruction(storage, some_id)
    if found is None:
        raise UnknownId(f"{some_id}: no pair, instruction or completion with this id")
    batch, iid = found
    lines: list[str] = []
    [instruction] = _rows(
        storage, "SELECT * FROM instructions WHERE batch_id = ? AND instruction_id = ?", batch, iid
    )
    history = history_of(instruction)  # a conversation's turns before the instruction
    lines += [
        f"instruction {iid}",
        f"  from {instruction['source']} row {instruction['source_row']} (batch {batch})",
        *([] if history else _text(instruction["instruction"])),
    ]
    if instruction["system_prompt"]:
        lines += ["  system prompt:", *_text(instruction["system_prompt"], 4)]
    for turn in history:
        lines += [f"  {turn['role']}:", *_text(turn["content"], 4)]
    if history:
        lines += ["  user (the turn the answers answer):", *_text(instruction["instruction"], 4)]
    lines += _completions(storage, batch, iid)
    lines += _ratings(storage, batch, iid)
    lines += _pairs(storage, batch, iid, some_id)
    return "\n".join(lines)


def _completions(storage: Storage, batch: str, iid: str) -> list[str]:
    lines: list[str] = []
    sql = (
        "SELECT t.*, c.not_chosen_because, l.latency_s, l.run_id FROM {table} AS t "
        "LEFT JOIN candidates AS c USING (batch_id, completion_id) "
        "LEFT JOIN llm_calls AS l USING (call_id) "
        "WHERE t.batch_id = ? AND t.instruction_id = ? ORDER BY {order}"
    )
    tables = (
        ("completions", "model, sample_index", "pooled completions"),
        ("evolved_completions", "round, completion_id", "EvolQuality rewrites"),
    )
    for table, order, title in tables:
        lines += ["", title]
        for row in _rows(storage, sql.format(table=table, order=order), batch, iid):
            origin = (
                f"sample {row['sample_index']}"
                if table == "completions"
                else f"round {row['round']} of {row['parent_completion_id']}, "
                f"criterion {row['mutation']}"
            )
            lines.append(f"  {row['completion_id']}  {row['model']}  {origin}  {_finish(row)}")
            lines += _call(row) + _text(row["text"], 4)
    return lines


def _finish(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"FAILED: {row['error']}"
    parts = [f"finish {row['finish_reason']}", f"{row['completion_tokens']} tokens"]
    if row.get("not_chosen_because"):
        parts.append(f"never chosen: {row['not_chosen_because']}")
    return ", ".join(parts)


def _call(row: dict[str, Any]) -> list[str]:
    latency = "" if row.get("latency_s") is None else f", {row['latency_s']:.2f} s"
    return [f"    call {row['call_id']} (run {row.get('run_id')}{latency})"]


def _ratings(storage: Storage, batch: str, iid: str) -> list[str]:
    lines = ["", "judge answers"]
    rows = _rows(
        storage,
        "SELECT * FROM ratings WHERE batch_id = ? AND instruction_id = ? "
        "ORDER BY purpose, judge, aspect, order_name, call_id, position",
        batch,
        iid,
    )
    raw_shown: set[str] = set()
    for row in rows:
        rating = "NULL" if row["rating"] is None else f"{row['rating']:g}"
        if row["raw_score"] is not None:  # a reward model's: its score, placed on 1-5
            rating += f" (score {row['raw_score']:.4g})"
        lines.append(
            f"  {row['purpose']}  {row['judge']}  {row['aspect']}  {row['mode']}  "
            f"order {row['order_name']}  position {row['position']}/{row['shown']}  "
            f"{row['completion_id']}: {rating} ({row['parse_status']})"
        )
        if row["rationale"]:
            lines += _text(f"rationale: {row['rationale']}", 4)
        if row["call_id"] not in raw_shown:
            raw_shown.add(row["call_id"])
            lines += _text(f"raw answer (call {row['call_id']}): {row['raw_output']}", 4)
    if not rows:
        lines.append("  none")
    return lines


def _pairs(storage: Storage, batch: str, iid: str, some_id: str) -> list[str]:
    lines = ["", "pairing (candidate_pairs)"]
    rows = _rows(
        storage,
        "SELECT * FROM candidate_pairs WHERE batch_id = ? AND instruction_id = ? ORDER BY pair_id",
        batch,
        iid,
    )
    for row in rows:
        mark = "*" if row["pair_id"] == some_id else " "
        verdict = f"dropped: {row['dropped_because']}" if row["dropped_because"] else "kept"
        lines.append(
            f" {mark}{row['pair_id']}  chosen {row['chosen_completion_id']} "
            f"({_score(row['chosen_rating'])}) over {row['rejected_completion_id']} "
            f"({_score(row['rejected_rating'])}), margin {_score(row['margin'])}: {verdict}"
        )
    if not rows:
        lines.append("  none")
    ran, held = blocking_results(storage, batch)
    lines.append("")
    if not ran:
        lines.append(f"batch {batch}: no blocking check has run yet")
    elif held:
        lines.append(f"batch {batch}: held back from the export by")
        lines += [f"  {reason}" for reason in held]
    else:
        lines.append(f"batch {batch}: every blocking check passed; its kept pairs are exported")
    return lines


def _score(value: float | None) -> str:
    return "unrated" if value is None else f"{value:.2f}"


def _rows(storage: Storage, sql: str, *params: Any) -> list[dict[str, Any]]:
    return storage.query(sql, list(params)).to_dicts()


def _text(text: str | None, indent: int = 2) -> list[str]:
    """A text's lines, indented, long ones wrapped, nothing cut."""
    if text is None:
        return [" " * indent + "(no text)"]
    out = []
    for line in text.splitlines() or [""]:
        while len(line) > WIDTH - indent:
            out.append(" " * indent + line[: WIDTH - indent])
            line = line[WIDTH - indent :]
        out.append(" " * indent + line)
    return out
