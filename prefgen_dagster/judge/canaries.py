"""Canaries: comparisons with a known answer, built from the batch itself (pure).

A canary pairs a real, finished completion (the *intact* side) with a corrupted copy of it
(the *corrupted* side). The judge sees both exactly as it sees real candidates (same prompt,
mode, orders and panel), and a judge worth trusting rates the intact side higher. Canaries
are judged but never paired or exported; their outcome is the judge's accuracy on this batch.

Kinds of corruption:

* `truncated`: the first third of the text's words;
* `shuffled`: its sentences in another order (its words, when it has fewer than three
  sentences);
* `other_answer`: a finished completion written for another instruction of the batch;
* `repetition`: its first sentence repeated until the text is as long as the original;
* `weaker_model`: a completion of the same instruction by a model ranked below the intact
  side's model in `generation.model_ranking`.

Everything is fixed by the seed and the completions' ids, so a rerun builds the same
canaries and asks nothing new.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from prefgen_dagster.ids import seed_from, stable_hash
from prefgen_dagster.text.quality import can_be_chosen, words

# An intact side needs this many words, so that cutting or shuffling it changes something.
MIN_SOURCE_WORDS = 8
TRUNCATE_TO = 1 / 3
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD_SPAN = re.compile(r"\S+")


@dataclass(frozen=True)
class Canary:
    canary_id: str
    instruction_id: str
    kind: str
    source_completion_id: str
    source_model: str
    intact_text: str
    corrupted_text: str
    # The completion the corrupted text was taken from (other_answer, weaker_model).
    corrupted_from_id: str | None
    # Shown first in the base order: on exactly half of each kind's canaries (one fewer when
    # odd), by a hash of the canary, so a judge that rates by position is right on half.
    corrupted_first: bool

    @property
    def intact_id(self) -> str:
        return stable_hash([self.canary_id, "intact"])

    @property
    def corrupted_id(self) -> str:
        return stable_hash([self.canary_id, "corrupted"])

    def items(self) -> list[tuple[str, str]]:
        """(item id, text) in the base order."""
        intact = (self.intact_id, self.intact_text)
        corrupted = (self.corrupted_id, self.corrupted_text)
        return [corrupted, intact] if self.corrupted_first else [intact, corrupted]

    def row(self, batch_id: str) -> dict[str, Any]:
        """The `canaries` table row."""
        return {
            "batch_id": batch_id,
            "canary_id": self.canary_id,
            "instruction_id": self.instruction_id,
            "kind": self.kind,
            "intact_id": self.intact_id,
            "corrupted_id": self.corrupted_id,
            "source_completion_id": self.source_completion_id,
            "source_model": self.source_model,
            "corrupted_from_id": self.corrupted_from_id,
            "corrupted_text": self.corrupted_text,
            "corrupted_first": self.corrupted_first,
        }


def truncated(text: str) -> str:
    """The first third of the words (at least one word fewer than the text)."""
    spans = list(_WORD_SPAN.finditer(text))
    keep = max(1, min(len(spans) - 1, math.floor(len(spans) * TRUNCATE_TO)))
    return text[: spans[keep - 1].end()]


def shuffled(text: str, seed: int) -> str:
    """The sentences in a new order, or the words when there are fewer than three
    sentences; never the original order."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    parts, joiner = (sentences, " ") if len(sentences) >= 3 else (text.split(), " ")
    if len(set(parts)) < 2:
        return text
    rng = random.Random(seed)
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return joiner.join(parts[i] for i in order)


def repetition_loop(text: str) -> str:
    """The first sentence (at most 12 words) repeated until as long as the text."""
    first = _SENTENCE_END.split(text.strip())[0]
    phrase = " ".join(first.split()[:12])
    copies = max(2, math.ceil(len(text) / (len(phrase) + 1)))
    return " ".join([phrase] * copies)


def sample_ids(ids: Sequence[str], fraction: float, minimum: int, seed: int, salt: str) -> set[str]:
    """A seeded sample of ids: `fraction` of them, at least `minimum` (or all of them), each
    id ranked by its own hash so the sample changes little when the batch changes."""
    if fraction <= 0 or not ids:
        return set()
    ranked = sorted(ids, key=lambda i: seed_from(salt, seed, i))
    count = max(math.ceil(fraction * len(ranked)), min(minimum, len(ranked)))
    return set(ranked[:count])


def canary_sample(ids: Sequence[str], fraction: float, minimum: int, seed: int) -> set[str]:
    """The instructions that get canaries (among those with an intact side to offer)."""
    return sample_ids(ids, fraction, minimum, seed, "canary-sample")


def build_canaries(
    completions: list[dict[str, Any]],
    kinds: Sequence[str],
    fraction: float,
    min_instructions: int,
    seed: int,
    source_models: Sequence[str],
    ranking: Sequence[str],
    max_repetition: float,
) -> list[Canary]:
    """Canaries for a sample of the instructions that have a usable intact side.

    `completions` are the batch's pooled completions (completion_id, instruction_id, model,
    text, finish_reason, repetition); `source_models` and `ranking` are model identities
    (`source_models` empty: any model).
    """
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(completions, key=lambda r: r["completion_id"]):
        by_instruction.setdefault(row["instruction_id"], []).append(row)
    sources = {
        iid: [row for row in rows if _usable_source(row, source_models, max_repetition)]
        for iid, rows in by_instruction.items()
    }
    sources = {iid: rows for iid, rows in sources.items() if rows}
    chosen = canary_sample(sorted(sources), fraction, min_instructions, seed)
    canaries = []
    for iid in sorted(chosen):
        source = min(
            sources[iid], key=lambda r: seed_from("canary-source", seed, r["completion_id"])
        )
        for kind in kinds:
            corrupted = _corrupt(kind, source, sources, by_instruction[iid], ranking, seed)
            if corrupted is None:
                continue
            text, from_id = corrupted
            canary_id = stable_hash(["canary", seed, kind, source["completion_id"], text])
            canaries.append(
                Canary(
                    canary_id=canary_id,
                    instruction_id=iid,
                    kind=kind,
                    source_completion_id=source["completion_id"],
                    source_model=source["model"],
                    intact_text=source["text"],
                    corrupted_text=text,
                    corrupted_from_id=from_id,
                    corrupted_first=False,  # set below, once the kind's canaries are known
                )
            )
    return balanced_order(canaries, seed)


def balanced_order(canaries: list[Canary], seed: int) -> list[Canary]:
    """The canaries with the corrupted side first on every other canary of each kind, in an
    order drawn by hash: a coin per canary would leave a position judge right on 18 of 25
    now and then, and its accuracy's interval above one half."""
    flipped: set[str] = set()
    for kind in {canary.kind for canary in canaries}:
        ids = sorted(c.canary_id for c in canaries if c.kind == kind)
        ranked = sorted(ids, key=lambda cid: seed_from("canary-order", seed, cid))
        flipped |= set(ranked[1::2])
    return [replace(c, corrupted_first=c.canary_id in flipped) for c in canaries]


def _usable_source(row: dict[str, Any], models: Sequence[str], max_repetition: float) -> bool:
    return (
        (not models or row["model"] in models)
        and can_be_chosen(
            row["text"],
            row["finish_reason"],
            row["repetition"],
            max_repetition,
            row.get("echoed_marker"),
        )
        and len(words(row["text"])) >= MIN_SOURCE_WORDS
    )


def _corrupt(
    kind: str,
    source: dict[str, Any],
    sources: dict[str, list[dict[str, Any]]],
    siblings: list[dict[str, Any]],
    ranking: Sequence[str],
    seed: int,
) -> tuple[str, str | None] | None:
    """(corrupted text, completion it came from), or None when the kind does not apply."""
    text, cid = source["text"], source["completion_id"]
    if kind == "truncated":
        return truncated(text), None
    if kind == "shuffled":
        mixed = shuffled(text, seed_from("canary-shuffle", seed, cid))
        return (mixed, None) if mixed != text else None
    if kind == "repetition":
        return repetition_loop(text), None
    if kind == "other_answer":
        others = [
            row
            for iid, rows in sources.items()
            if iid != source["instruction_id"]
            for row in rows
            if row["text"] != text
        ]
        if not others:
            return None
        other = min(others, key=lambda r: seed_from("canary-other", seed, cid, r["completion_id"]))
        return other["text"], other["completion_id"]
    if kind == "weaker_model":
        if source["model"] not in ranking:
            return None
        below = set(ranking[ranking.index(source["model"]) + 1 :])
        weaker = [row for row in siblings if row["model"] in below and (row["text"] or "").strip()]
        if not weaker:
            return None
        pick = min(weaker, key=lambda r: seed_from("canary-weaker", seed, cid, r["completion_id"]))
        return pick["text"], pick["completion_id"]
    raise ValueError(f"unknown canary kind {kind!r}")
