"""Tests of the token counters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recal_gym.tokens import TokenCounter, TokenizerCounter, WordPunctCounter


def test_word_punct_counts() -> None:
    c = WordPunctCounter()
    assert c.count("Hello, world!") == 4
    assert c.count("<information>") == 3
    assert c.count("") == 0
    assert c.truncate("a b c d", 2) == "a b"
    assert c.truncate("a b", 0) == ""
    assert c.truncate("a b", 10) == "a b"


@given(st.text(max_size=200), st.integers(min_value=0, max_value=60))
def test_truncate_is_prefix_within_budget(text: str, n: int) -> None:
    c = WordPunctCounter()
    out = c.truncate(text, n)
    assert text.startswith(out)
    assert c.count(out) <= n
    assert c.count(out) == min(n, c.count(text))


class _CharTokenizer:
    """A toy tokenizer without ``is_fast``: one id per character."""

    def encode(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


def test_tokenizer_counter_plain_encode_decode() -> None:
    c = TokenizerCounter(_CharTokenizer())
    assert isinstance(c, TokenCounter)
    assert c.count("héllo") == 5
    assert c.truncate("héllo", 2) == "hé"
