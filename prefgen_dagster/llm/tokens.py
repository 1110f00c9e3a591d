"""How many tokens a text takes for a model: the one counter that every "does it fit?"
answer before a run uses (ingest's context check, the cost estimate and its warnings).

A model whose path is a local folder with a `tokenizer.json` is counted exactly with the
`tokenizers` library, a whole list of texts per call. Any other model (a hub name, a server
we have no tokenizer for) or a machine without `tokenizers` gets an estimate of UTF-8 bytes
/ 2, rounded up: about twice what BPE tokenizers give for English and close to their count
for CJK text, so it errs towards "does not fit", and it gives the same answer on every
machine, so a file is split into the same accepted and rejected rows everywhere.

The chat template's own markup is not counted here (`input.context_margin_tokens` stands for
it); at run time the vLLM engine measures each prompt exactly, template included, and fails
the ones that do not fit instead of sending them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prefgen_dagster.config import PipelineConfig

if TYPE_CHECKING:
    from prefgen_dagster.llm.plan import Planned

BYTES_PER_TOKEN_ESTIMATE = 2

# A text put into a prompt can merge with the characters around it into fewer tokens, or
# split at its edges into more, than it and the prompt take apart: each inserted text counts
# this many more.
SEAM_TOKENS = 2

# Texts a tokenizer encodes in one call: enough to keep its threads busy, few enough that
# their encodings (~250 bytes per token while they live) take tens of MB at most.
COUNT_SLICE = 512


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of many texts in one call; `method` says how (shown in reasons)."""

    method: str
    count: Callable[[list[str]], list[int]]
    exact: bool = True


def estimate_tokens(texts: list[str]) -> list[int]:
    return [-(-len(text.encode("utf-8")) // BYTES_PER_TOKEN_ESTIMATE) for text in texts]


BYTE_ESTIMATE = TokenCounter(
    f"estimate: UTF-8 bytes / {BYTES_PER_TOKEN_ESTIMATE}", estimate_tokens, exact=False
)


def tokenizer_counter(tokenizer_file: Path) -> TokenCounter | None:
    """An exact counter from a `tokenizer.json`, or None where `tokenizers` cannot load."""
    try:
        from tokenizers import Tokenizer
    except Exception:  # a broken install can fail with more than ImportError
        return None
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    # Some tokenizer.json files switch truncation on, which would cap every count.
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: list[str]) -> list[int]:
        # A slice at a time, without offsets: one `encode_batch` over a whole batch's texts
        # held every encoding at once (1.5 GB more for 100,000 instructions), and the
        # allocator kept most of that memory afterwards.
        counts: list[int] = []
        for start in range(0, len(texts), COUNT_SLICE):
            encodings = tokenizer.encode_batch_fast(
                texts[start : start + COUNT_SLICE], add_special_tokens=False
            )
            counts.extend(len(encoding) for encoding in encodings)
        return counts

    return TokenCounter(f"tokenizer {tokenizer_file}", count)


class TokenCounters:
    """The counter of each model of a config, each tokenizer file loaded once."""

    def __init__(self, config: PipelineConfig) -> None:
        self._config = config
        self._loaded: dict[str, TokenCounter] = {}

    def for_model(self, name: str) -> TokenCounter:
        tokenizer_file = Path(self._config.model_location(name)) / "tokenizer.json"
        if not tokenizer_file.is_file():
            return BYTE_ESTIMATE
        key = str(tokenizer_file.resolve())
        if key not in self._loaded:
            self._loaded[key] = tokenizer_counter(tokenizer_file) or BYTE_ESTIMATE
        return self._loaded[key]


def prompts_tokens(
    prompts: list[list[dict[str, str]]], counter: TokenCounter, config: PipelineConfig
) -> list[int]:
    """Each prompt's tokens: its messages, plus the chat template's markup (the margin ingest
    keeps for it too). The distinct texts go to the counter in one call (a call per prompt
    costs more than the counting at a few thousand prompts, and a pool's completions of an
    instruction, or a stage's system prompt, repeat the same text)."""
    distinct = list(dict.fromkeys(m["content"] for messages in prompts for m in messages))
    tokens = dict(zip(distinct, counter.count(distinct), strict=True))
    margin = config.input.context_margin_tokens
    return [sum(tokens[m["content"]] for m in messages) + margin for messages in prompts]


def planned_prompt_tokens(
    plans: list[Planned], counters: TokenCounters, config: PipelineConfig
) -> list[int]:
    """Each planned request's prompt tokens (`prompts_tokens`), one counting call per model."""
    sizes = [0] * len(plans)
    by_model: dict[str, list[int]] = {}
    for index, plan in enumerate(plans):
        by_model.setdefault(plan.model_name, []).append(index)
    for name, indexes in by_model.items():
        prompts = [plans[index].request.messages for index in indexes]
        for index, size in zip(
            indexes, prompts_tokens(prompts, counters.for_model(name), config), strict=True
        ):
            sizes[index] = size
    return sizes
