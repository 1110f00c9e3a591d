"""`input:` how instruction files are read, and the datasets the inbox sensor watches."""

from __future__ import annotations

from pydantic import Field

from prefgen_dagster.config.base import Strict


class DatasetInput(Strict):
    """One split of a dataset as a batch (`input/datasets.py`)."""

    # `hf://datasets/ORG/NAME` (`@REVISION` pins one), or a folder (relative to the config's
    # folder): laid out like a Hub dataset repo, or written by `save_to_disk`.
    name: str = Field(min_length=1)
    # The dataset's config (the Hub calls it a subset); unset: its only or default one.
    config: str | None = None
    split: str = Field("train", min_length=1)
    # Only the split's first rows.
    limit: int | None = Field(None, gt=0)


class InputConfig(Strict):
    """How instruction files are read: the field (JSONL key, CSV or Parquet column) names."""

    instruction_field: str = Field("instruction", min_length=1)
    system_prompt_field: str = Field("system_prompt", min_length=1)
    # A row without the instruction field but with one of these holds a conversation: a
    # list of messages (`role`/`content`, or ShareGPT's `from`/`value`) whose last user turn
    # is answered (`text/conversation.py`).
    conversation_fields: list[str] = Field(default_factory=lambda: ["messages", "conversations"])
    # Tokens kept free for the chat template's markup (role markers, the default system
    # prompt some templates add) when checking that an instruction fits the pool's context.
    context_margin_tokens: int = Field(32, ge=0)
    # Datasets the inbox sensor watches: each new revision of one becomes a batch. They shape
    # no row (a batch's rows come from its file), so no settings hash holds them.
    datasets: list[DatasetInput] = Field(default_factory=list)
