"""Tests of recal_gym.rewards.format_rules: F1-F9 and the route component (docs/rewards.md §6-§7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.protocol import RESERVED_TAGS, TAG_STRINGS, scan_block_pairs, scan_blocks
from recal_gym.resolver import resolve_model
from recal_gym.rewards.format_rules import (
    FORMAT_ERRORS,
    check_format,
    check_format_pairs,
    route_score,
    search_block_valid,
)
from recal_gym.types import AliasRule, NameTable

_NAMES = (
    "Qwen2.5-7B-Instruct",
    "LLaMA-3.1-8B-Instruct",
    "LLaMA-3.1-70B-Instruct",
    "Mistral-7B-Instruct",
    "Mixtral-8x22B-Instruct",
    "Gemma-2-27B-Instruct",
    "Palmyra-Creative-122B",
    "LLaMA3-ChatQA-1.5-8B",
)
_RULES = (
    (("qwen",), "Qwen2.5-7B-Instruct"),
    (("palmyra",), "Palmyra-Creative-122B"),
    (("creative",), "Palmyra-Creative-122B"),
    (("llama", "70b"), "LLaMA-3.1-70B-Instruct"),
    (("llama", "51b"), None),
    (("llama", "49b"), None),
    (("llama", "8b", "chatqa"), "LLaMA3-ChatQA-1.5-8B"),
    (("llama", "8b"), "LLaMA-3.1-8B-Instruct"),
    (("llama",), None),
    (("mistral",), "Mistral-7B-Instruct"),
    (("mixtral",), "Mixtral-8x22B-Instruct"),
    (("granite",), None),
    (("gemma",), "Gemma-2-27B-Instruct"),
)
# The router-r1 preset's resolver: Router-R1's keyword rules alone (docs/protocol.md §8).
TABLE = NameTable(
    names=_NAMES,
    listed=_NAMES[:6],
    alias_rules=tuple(AliasRule(keywords=k, model=m) for k, m in _RULES),
    name_matching="router-r1",
)

INFO = "\n\n<information>X was founded in 1950.</information>\n\n"
NONE = "\n\n<information>None</information>\n\n"


def _route(name_query: str, splice: str = INFO) -> str:
    return f"<think>I need the year.</think>\n<search> {name_query} </search>{splice}"


ANSWER = "<think>Known now.</think>\n<answer> 1950 </answer>"

PASSING = [
    "<think>easy</think><answer>1950</answer>",
    "  \n<think>easy</think>\n<answer>1950</answer>\n ",  # F6/F7 strip surrounding whitespace
    _route("LLaMA-3.1-8B-Instruct: When was X founded?") + ANSWER,
    _route("qwen: When was X founded?") + _route("Gemma: and where?") + ANSWER,
    _route("QWEN2.5-72B: When was X founded?") + ANSWER,  # keyword rule, any case
    _route("Palmyra: When was X founded?") + ANSWER,  # unlisted but resolvable
    "<think>... and more</think><answer>x</answer>",  # F3: only exactly "..." is empty
    "<think>a</think><think>b</think><answer></answer>",  # an empty answer block is still one block
]


@pytest.mark.parametrize("transcript", PASSING)
def test_passing_transcripts(transcript: str) -> None:
    result = check_format(transcript, TABLE)
    assert result.ok and result.error == ""
    assert all(result.search_valid)


FAILING = [
    # F1
    ("no_blocks", "The answer is 1950."),
    ("no_blocks", "<think>unclosed"),
    ("no_blocks", ""),
    # F2: raw opening and closing strings must balance for each tag
    ("unbalanced_tags", "<think>a</think><answer>1950</answer></think>"),
    ("unbalanced_tags", "<think>a</think><answer>1950</answer><search>"),
    ("unbalanced_tags", _route("qwen: q", "\n\n<information>cut by the splice")),
    # F3
    ("empty_think", "<think>   </think><answer>1950</answer>"),
    ("empty_think", "<think> ... </think><answer>1950</answer>"),
    ("empty_think", "<think>a</think><think></think><answer>1950</answer>"),
    # F4: an answer block nested in a think block (still extracted as the answer)
    ("nested_tags", "<think>a <answer>1950</answer> b</think><answer>1950</answer>"),
    ("nested_tags", "<think>see </information> here <information></think><answer>x</answer>"),
    # F5
    ("block_counts", "<think>a</think><answer>1</answer><answer>2</answer>"),
    ("block_counts", "<answer>1950</answer>"),
    ("block_counts", "<think>a</think>"),
    ("block_counts", "<think>a</think><search>qwen: q</search>" + ANSWER),  # final-turn route, no info
    ("block_counts", "<think>a</think><information>1950</information>" + ANSWER),  # forged block
    # F6
    ("not_starting_with_think", "Sure. <think>a</think><answer>1950</answer>"),
    ("not_starting_with_think", "<answer>1950</answer><think>a</think>"),
    # F7
    ("not_ending_with_answer", "<think>a</think><answer>1950</answer> Thanks!"),
    # F8
    ("bad_route_syntax", _route("qwen: when: exactly?") + ANSWER),  # multi-colon query
    ("bad_route_syntax", _route("qwen when was X founded") + ANSWER),  # no colon
    ("bad_route_syntax", _route("qwen:   ") + ANSWER),  # blank query
    ("bad_route_syntax", _route("LLM-Name:Your-Query") + ANSWER),  # the placeholder
    ("bad_route_syntax", _route("qwen: your-query about X") + ANSWER),
    ("bad_route_syntax", _route("Qwen: what does qwen know?") + ANSWER),  # name inside the query
    ("bad_route_syntax", _route(": when was X founded?") + ANSWER),  # an empty name is in every query
    # F9
    ("unknown_model", _route("GPT-4: When was X founded?", NONE) + ANSWER),
    ("unknown_model", _route("LLaMA-3.1-70 B-Instruct: q", NONE) + ANSWER),  # Router-R1 rejects
    ("unknown_model", _route("llama-51b: q", NONE) + ANSWER),  # unpriced in Router-R1: unknown here
    ("unknown_model", _route("qwen: q") + _route("Claude: q2", NONE) + ANSWER),
]


@pytest.mark.parametrize(("error", "transcript"), FAILING)
def test_failing_transcripts_report_the_first_failing_rule(error: str, transcript: str) -> None:
    result = check_format(transcript, TABLE)
    assert not result.ok
    assert result.error == error


def test_every_rule_has_a_failing_case_in_order() -> None:
    assert tuple(dict.fromkeys(e for e, _ in FAILING)) == FORMAT_ERRORS


def test_rule_order_first_failure_wins() -> None:
    # Fails F3 (empty think), F6 (does not start with think) and F8: F3 is reported.
    t = "x <think></think><search>a:b:c</search><information>i</information><answer>y</answer>"
    assert check_format(t, TABLE).error == "empty_think"


def test_precomputed_block_scan_gives_the_same_result() -> None:
    for transcript in PASSING + [t for _, t in FAILING]:
        assert check_format(transcript, TABLE, spans=scan_blocks(transcript)) == check_format(transcript, TABLE)


def test_search_validity_and_route_score() -> None:
    t = _route("qwen: q1") + _route("GPT-4: q2", NONE) + _route("gemma: a: b") + _route("mistral: q4") + ANSWER
    result = check_format(t, TABLE)
    assert result.search_valid == (True, False, False, True)
    assert result.syntax_ok == (True, True, False, True)
    assert route_score(result, 1.0) == 0.5
    no_routes = check_format("<think>a</think><answer>b</answer>", TABLE)
    assert no_routes.search_valid == ()
    assert route_score(no_routes, 1.0) == 1.0
    assert route_score(no_routes, 0.25) == 0.25


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (" qwen: When? ", True),
        ("qwen:When?", True),
        ("qwen: a:b", False),
        ("gpt: q", False),
        ("qwen", False),
        ("qwen: qwen2?", False),
    ],
)
def test_search_block_valid(content: str, expected: bool) -> None:
    assert search_block_valid(content, TABLE) is expected


def test_lenient_table_accepts_squashed_names() -> None:
    lenient = NameTable(names=TABLE.names, listed=TABLE.listed, alias_rules=TABLE.alias_rules, name_matching="lenient")
    t = _route("LLaMA-3.1-70 B-Instruct: q") + ANSWER
    assert check_format(t, lenient).ok
    assert check_format(t, TABLE).error == "unknown_model"


_TAGS = ["<think>", "</think>", "<search>", "</search>", "<information>", "</information>", "<answer>", "</answer>"]
_pieces = st.sampled_from([*_TAGS, "qwen: q", "gpt: x", "...", " ", "\n", "a", ":", "LLM-Name", "1950", "<Answer>"])


@given(st.lists(_pieces, max_size=25))
def test_check_format_never_raises_and_is_consistent(pieces: list[str]) -> None:
    transcript = "".join(pieces)
    result = check_format(transcript, TABLE)
    assert result.ok == (result.error == "")
    assert result.error in ("", *FORMAT_ERRORS)
    n_search = sum(b.tag == "search" for b in scan_blocks(transcript))
    assert len(result.search_valid) == n_search
    assert 0.0 <= route_score(result, 1.0) <= 1.0
    if result.ok:
        assert transcript.strip().startswith("<think>") and transcript.strip().endswith("</answer>")


def _f8(content: str) -> bool:
    """F8 as docs/rewards.md §6 states it."""
    c = content.strip()
    if c.count(":") != 1:
        return False
    name, query = (x.strip().lower() for x in c.split(":"))
    return bool(query) and "llm-name" not in c.lower() and "your-query" not in c.lower() and name not in query


def _reference_error(transcript: str) -> str:
    """F1-F9 of docs/rewards.md §6 written out plainly: every rule scans, no shortcut."""
    blocks = scan_blocks(transcript)
    tags = [b.tag for b in blocks]
    searches = [b.content for b in blocks if b.tag == "search"]
    stripped = transcript.strip()
    rules = [
        ("no_blocks", lambda: bool(blocks)),
        (
            "unbalanced_tags",
            lambda: all(transcript.count(f"<{t}>") == transcript.count(f"</{t}>") for t in RESERVED_TAGS),
        ),
        ("empty_think", lambda: not any(b.tag == "think" and b.content.strip() in ("", "...") for b in blocks)),
        ("nested_tags", lambda: not any(tag in b.content for b in blocks for tag in TAG_STRINGS)),
        (
            "block_counts",
            lambda: (
                tags.count("answer") == 1
                and tags.count("think") >= 1
                and tags.count("search") == tags.count("information")
            ),
        ),
        ("not_starting_with_think", lambda: stripped.startswith("<think>")),
        ("not_ending_with_answer", lambda: stripped.endswith("</answer>")),
        ("bad_route_syntax", lambda: all(_f8(c) for c in searches)),
        ("unknown_model", lambda: all(resolve_model(c.strip().split(":")[0], TABLE) is not None for c in searches)),
    ]
    return next((rule for rule, holds in rules if not holds()), "")


_NOISY = st.sampled_from([*_TAGS, "qwen: q", "gpt: x", "...", " ", "\n", "a", ":", "<", "<Answer>", "</think", "< a >"])


@given(st.lists(_NOISY, max_size=30))
def test_check_format_matches_the_plain_rules(pieces: list[str]) -> None:
    # The shared check counts '<' once instead of running F2 and F4 in full when every '<' is a block
    # tag; the plain rules must agree on every transcript, clean or not.
    transcript = "".join(pieces)
    result = check_format(transcript, TABLE)
    assert result.error == _reference_error(transcript)
    pairs = scan_block_pairs(transcript)
    assert check_format_pairs(transcript, pairs, lambda n: resolve_model(n, TABLE)) == result
