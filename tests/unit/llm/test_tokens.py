"""Token counting with a model's tokenizer: exact counts in bounded memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Run in a fresh process, whose peak RSS is the counting's alone: 20,000 texts of 151
# words, about 3 million tokens. Counting them in one `encode_batch` call held every
# encoding at once (~430 MiB more); a slice at a time, ~25 MiB.
COUNT_IN_A_FRESH_PROCESS = """
import resource, sys
from pathlib import Path
from prefgen_dagster.llm.tokens import tokenizer_counter

counter = tokenizer_counter(Path(sys.argv[1]))
texts = ["word " * 150 + str(i) for i in range(20_000)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
counts = counter.count(texts)
grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(counts == [151] * len(texts), round(grown_mib))
"""


@pytest.fixture
def word_tokenizer(tmp_path: Path) -> Path:
    """A tokenizer.json that makes one token per whitespace-separated word."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_many_texts_are_counted_exactly_in_bounded_memory(word_tokenizer: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_IN_A_FRESH_PROCESS, str(word_tokenizer)],
        capture_output=True,
        text=True,
        check=True,
    )
    exact, grown_mib = done.stdout.split()
    assert exact == "True"
    assert int(grown_mib) < 64, f"counting took {grown_mib} MiB more"
