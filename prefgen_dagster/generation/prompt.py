"""Messages for the pool's first completions."""

from __future__ import annotations

import sys

from prefgen_dagster.ids import source_version


def generation_messages(
    instruction: str, instruction_system_prompt: str | None, pool_system_prompt: str | None
) -> list[dict[str, str]]:
    """The instruction as a user turn; its own system prompt wins over the pool member's."""
    system = instruction_system_prompt or pool_system_prompt
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": instruction}]


# In every completion id: edit the template and its rows are new ones (asked anew).
TEMPLATE_VERSION = source_version("generation", sys.modules[__name__])
