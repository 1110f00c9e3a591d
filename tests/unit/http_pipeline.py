"""A pipeline whose models are all served over HTTP by a `FaultServer`, for runs with faults.

The pairs come from the judge-free rule (every rewrite over its original), so the server's
answers need no meaning: each is a sentence of words drawn from its prompt's hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from tests.unit.llm.fault_server import FaultServer

POOL = ("srv-a", "srv-b")  # two pool members served by the same server; srv-a also rewrites
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


def reply(content: str) -> str:
    """Twelve words picked by the prompt's hash: distinct texts, no prompt markers."""
    digest = hashlib.sha256(content.encode()).digest()
    return "Answer: " + " ".join(WORDS[byte % len(WORDS)] + str(byte) for byte in digest[:12])


def write_http_config(
    workdir: Path, server: FaultServer, instructions: list[str], **checks: Any
) -> Path:
    """`workdir/prefgen.yaml` for the server's models (default engine settings, one retry),
    and `instructions` as the inbox file `batch.jsonl`; returns the config's path."""
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["models"] = {
        name: {"path": name, "backend": "openai", "base_urls": [server.url], "max_retries": 1}
        for name in POOL
    }
    raw["generation"]["pool"] = [{"model": name, "num_completions": 1} for name in POOL]
    raw["evol_quality"]["model"] = POOL[0]
    raw["judge"] = None
    raw["pairing"] = {"strategy": "rule_evolved_over_original"}
    raw["checks"] = checks
    path = workdir / "prefgen.yaml"
    path.write_text(yaml.safe_dump(raw))
    inbox = workdir / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    lines = [f'{{"instruction": "{text}"}}' for text in instructions]
    (inbox / "batch.jsonl").write_text("\n".join(lines) + "\n")
    return path
