"""Content hashes: the same input and settings give the same id on every run and machine."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from types import ModuleType
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


def source_version(name: str, *modules: ModuleType) -> str:
    """A version derived from the code of `modules`: their syntax tree without docstrings,
    so editing a prompt's text, a schema or a parser changes it, and a comment does not."""
    trees = []
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(body, list)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        trees.append(ast.dump(tree))
    return f"{name}-{stable_hash(trees, 12)}"
