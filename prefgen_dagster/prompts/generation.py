"""Messages for the pool's first completions."""

from __future__ import annotations

TEMPLATE_VERSION = "generation-v1"


def generation_messages(
    instruction: str, instruction_system_prompt: str | None, pool_system_prompt: str | None
) -> list[dict[str, str]]:
    """The instruction as a user turn; its own system prompt wins over the pool member's."""
    system = instruction_system_prompt or pool_system_prompt
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": instruction}]
