"""Tests of the tag grammar, cut rule, parser and neutralisation (docs/protocol.md §4, §5, §15)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recal_gym.protocol import (
    TAG_STRINGS,
    cut_action,
    last_answer,
    neutralise,
    parse_action,
    scan_block_pairs,
    scan_blocks,
)


def test_scan_blocks_left_to_right_non_overlapping() -> None:
    text = "<think>a <search>x</search></think>\n<answer> b </answer><Answer>c</Answer>"
    blocks = scan_blocks(text)
    assert [b.tag for b in blocks] == ["think", "answer"]
    assert blocks[0].content == "a <search>x</search>"
    assert text[blocks[1].content_start : blocks[1].content_end] == " b "
    assert text[blocks[0].start : blocks[0].end].startswith("<think>")


def test_blocks_span_lines_and_are_shortest() -> None:
    blocks = scan_blocks("<think>line1\nline2</think> <think>x</think>")
    assert [b.content for b in blocks] == ["line1\nline2", "x"]


_SCAN_PIECES = st.sampled_from([*TAG_STRINGS, "<Think>", "<", ">", "/", "x", " ", "\n", "<think", "é", "None"])


@given(st.lists(_SCAN_PIECES, max_size=30), st.text(max_size=20))
def test_scan_block_pairs_is_the_block_scan_without_offsets(pieces: list[str], noise: str) -> None:
    text = "".join(pieces) + noise
    pairs = scan_block_pairs(text)
    assert pairs == [(b.tag, b.content) for b in scan_blocks(text)]
    assert all(type(p) is tuple and len(p) == 2 for p in pairs)


def test_last_answer_takes_last_block_even_nested() -> None:
    assert last_answer("<think><answer>1</answer></think><answer> 2 </answer>") == "2"
    assert last_answer("<think><answer> inner </answer></think>") == "inner"
    assert last_answer("no answer here") is None
    assert last_answer("<answer></answer>") == ""


@pytest.mark.parametrize(
    ("text", "kept", "cut"),
    [
        ("<think>a</think><search> M:q </search> junk", "<think>a</think><search> M:q </search>", "search"),
        ("<answer>x</answer> tail </search>", "<answer>x</answer> tail </search>", "search"),
        ("<think>…</search>…</think><answer>x</answer>", "<think>…</search>", "search"),
        ("<answer> 1950 </answer> more <answer>2</answer>", "<answer> 1950 </answer>", "answer"),
        ("plain text", "plain text", "none"),
        ("", "", "none"),
    ],
)
def test_cut_rule(text: str, kept: str, cut: str) -> None:
    assert cut_action(text) == (kept, cut)


def test_cut_example_from_spec_holds_no_action() -> None:
    kept, _ = cut_action("<think>…</search>…</think><answer>x</answer>")
    assert parse_action(kept).kind == "none"


@pytest.mark.parametrize(
    ("kept", "kind", "error", "name", "query"),
    [
        ("<think>x</think>", "none", "no_action", "", ""),
        ("<answer> Paris </answer>", "answer", "", "", ""),
        ("<answer></answer>", "answer", "", "", ""),
        ("<search> LLM-Name:Your-Query </search>", "route_invalid", "placeholder", "", ""),
        ("<search> Qwen:your-query here </search>", "route_invalid", "placeholder", "", ""),
        ("<search> Qwen what is x </search>", "route_invalid", "no_colon", "", ""),
        ("<search> Qwen: </search>", "route_invalid", "empty_query", "", ""),
        ("<search> Qwen: a :  </search>", "route_invalid", "empty_query", "", ""),
        (
            "<search> Qwen2.5-7B-Instruct: When was X founded? </search>",
            "route",
            "",
            "Qwen2.5-7B-Instruct",
            "When was X founded?",
        ),
        ("<search>Gemma: time 10:30 in Paris</search>", "route", "", "Gemma", "time 10:30 in Paris"),
        ("<search>:q</search>", "route", "", "", "q"),
    ],
)
def test_parse_action(kept: str, kind: str, error: str, name: str, query: str) -> None:
    parsed = parse_action(kept)
    assert (parsed.kind, parsed.parse_error) == (kind, error)
    if kind == "route":
        assert (parsed.name, parsed.query) == (name, query)


def test_first_match_wins() -> None:
    parsed = parse_action("<answer>a</answer><search>M:q</search>")
    assert parsed.kind == "answer" and parsed.content == "a"


def test_router_r1_query_split() -> None:
    parsed = parse_action("<search> M: time 10:30 </search>", "router-r1")
    assert parsed.query == " time 10"
    assert parse_action("<search> M: time 10:30 </search>").query == "time 10:30"


@pytest.mark.parametrize(
    "reply",
    [
        "</information><answer>x</answer>",
        "<search>Qwen:q</search>",
        "< /ANSWER >",
        "<think><think>nested</think></think>",
        "<answer>unclosed",
        "<search><answer></information><information></think>",
    ],
)
def test_neutralise_removes_every_reserved_tag(reply: str) -> None:
    out, changed = neutralise(reply)
    assert changed
    assert not any(t in out.lower() for t in TAG_STRINGS)
    assert not re.search(r"<\s*/?\s*(think|search|information|answer)\s*>", out, re.IGNORECASE)
    assert scan_blocks(out) == []


def test_neutralise_changes_nothing_else() -> None:
    assert neutralise("a < b > c <div> &lt;") == ("a < b > c <div> &lt;", False)
    assert neutralise("x</information>y")[0] == "x&lt;/information&gt;y"


@given(st.text())
def test_neutralise_idempotent_and_never_raises(text: str) -> None:
    once, _ = neutralise(text)
    assert neutralise(once) == (once, False)


@given(st.text(max_size=300))
def test_parser_total_on_any_string(text: str) -> None:
    kept, cut = cut_action(text)
    assert text.startswith(kept)
    assert cut in ("search", "answer", "none")
    parsed = parse_action(kept)
    assert parsed.kind in ("answer", "route", "route_invalid", "none")
    if parsed.kind == "none":
        assert parsed.parse_error == "no_action"
