"""Character 3-gram Jaccard similarity, with hand-counted gram sets."""

from __future__ import annotations

import pytest

from prefgen_dagster.generation.diversity import max_similarity_to_earlier


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("The same text.", "The same text.", 1.0),
        ("Hello   World\n", "  hello world", 1.0),  # case and whitespace are normalised
        ("abcd", "bcde", 1 / 3),  # {abc, bcd} vs {bcd, cde}
        ("abcab", "abc", 1 / 3),  # {abc, bca, cab} vs {abc}
        ("aaaa", "aaa", 1.0),  # sets, not multisets
        ("abc", "xyz", 0.0),
        ("ab", "AB", 1.0),  # short texts are one gram
        ("ab", "abc", 0.0),  # {"ab"} vs {"abc"}
        ("", "", 1.0),
        ("", "   ", 1.0),  # whitespace-only collapses to empty
        ("", "abc", 0.0),
        ("x", "", 0.0),
    ],
)
def test_character_trigram_similarity(a: str, b: str, expected: float) -> None:
    assert max_similarity_to_earlier([a, b])[1] == pytest.approx(expected)
    assert max_similarity_to_earlier([b, a])[1] == pytest.approx(expected)


def test_max_similarity_to_earlier() -> None:
    texts = ["abcd", "xyzw", "bcde", "ABCD", "q"]
    # bcde's best earlier match is abcd two places back, not its neighbour.
    assert max_similarity_to_earlier(texts) == pytest.approx([None, 0.0, 1 / 3, 1.0, 0.0])


@pytest.mark.parametrize(("texts", "expected"), [([], []), (["only"], [None])])
def test_max_similarity_to_earlier_short(texts: list[str], expected: list) -> None:
    assert max_similarity_to_earlier(texts) == expected
