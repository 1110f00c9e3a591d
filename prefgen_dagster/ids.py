"""Content hashes: the same input and settings give the same id on every run and machine."""

from __future__ import annotations

import hashlib
import json
from typing import Any

ID_LENGTH = 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(value: Any, length: int = ID_LENGTH) -> str:
    """A short hex sha256 of any JSON-serialisable value."""
    digest = hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    return digest[:length]


def seed_from(*parts: Any) -> int:
    """A 31-bit integer seed derived from content (usable by every engine's `seed`)."""
    return int(stable_hash(list(parts), 16), 16) % (2**31 - 1)
