"""Reply text of the simulated pool: answer types, distractors, templates and padding.

``docs/pools.md`` §3. A simulated reply is a first line that states an answer (or abstains, or says
nothing specific), followed by neutral context sentences that pad it to about ``L`` words. The answer
line uses one fixed template, so :func:`extract_stated_answer` recovers what a perfect copier would
answer. Every function here is pure; randomness comes in as an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

from recal_gym.protocol import neutralise
from recal_gym.rewards.answer_metrics import normalize_answer
from recal_gym.types import QARow

__all__ = [
    "ABSTAIN_LINE",
    "ANSWER_TYPES",
    "STOP_WORDS",
    "UNRELATED_LINE",
    "AnswerType",
    "DistractorBank",
    "answer_from_splice",
    "answer_type",
    "build_bank",
    "compose_reply",
    "extract_stated_answer",
    "gold_tokens",
    "pick_distractor",
    "statement",
]

AnswerType = Literal["yes/no", "year", "date", "number", "entity"]
ANSWER_TYPES: tuple[AnswerType, ...] = ("yes/no", "year", "date", "number", "entity")
"""The answer types of ``docs/pools.md`` §3 ("entity" also covers every other answer)."""

DistractorBank = Mapping[str, Mapping[str, tuple[str, ...]]]
"""data source -> answer type -> sorted, de-duplicated gold answers of that source's rows and targets."""

STOP_WORDS: frozenset[str] = frozenset(
    """
    what which who whom whose when where why how whether is are was were be been being am do does did done
    doing has have had having can could will would shall should may might must of in on at to for from by
    with about as into onto over under between through during before after above below up down out off
    than then so and or but nor not no if it its this that these those there here he she they them his her
    their theirs him i me my we our you your us one ones also any some all each both either neither such
    same other another own very just only too more most much many name named tell give find please s
    """.split()
)
"""Words ignored by the relevance match (articles are already gone after normalisation)."""

ABSTAIN_LINE = "I cannot answer this reliably; please consult another model for this question."
"""First line of an abstention (the candidate instruction allows suggesting other models)."""
UNRELATED_LINE = "I have no specific information to offer on this request."
"""First line of the uninformative reply to an unrelated query."""

_STATEMENT_RE = re.compile(r"The answer is (.+)\.")
_YEAR_RE = re.compile(r"(1[0-9]|20)\d\d")
_NUMBER_RE = re.compile(r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?")
_SLASH_DATE_RE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_MONTH_RE = re.compile(
    r"\b(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(t|tember)?|oct(ober)?"
    r"|nov(ember)?|dec(ember)?)\b"
)
_FIRST_NAMES = (
    "Alder", "Brenna", "Corwin", "Delphine", "Esmond", "Fenella", "Garrick", "Hollis", "Isolde", "Jasper",
    "Kestrel", "Linnea", "Merrick", "Nerissa", "Orrin", "Perpetua", "Quillon", "Rosalind", "Sorrel", "Tamsin",
)  # fmt: skip
_LAST_NAMES = (
    "Ashworth", "Blackmere", "Caldecott", "Dunmore", "Eastlake", "Fairholme", "Greaves", "Hartwell",
    "Ingleby", "Kingsley", "Lockhart", "Marchbank", "Northcote", "Oakridge", "Pemberton", "Ravensworth",
)  # fmt: skip
_FILLER = (
    "This reply keeps to the main point of the request.",
    "Further details may depend on the source that is consulted.",
    "Background material on the subject is widely available.",
    "Some accounts describe the matter in slightly different terms.",
    "The summary above follows general reference knowledge.",
    "Readers may wish to confirm these details independently.",
    "Context helps when several similar topics share a label.",
    "Reference works usually cover this kind of topic briefly.",
    "Specific figures and names can vary between editions.",
    "More context could help narrow the request further.",
    "This explanation is intentionally brief and general.",
    "Related topics are often discussed together in overviews.",
)
_FILLER_SPLIT: tuple[tuple[str, ...], ...] = tuple(tuple(s.split()) for s in _FILLER)
_FILLER_WORDS: tuple[tuple[tuple[str, frozenset[str]], ...], ...] = tuple(
    tuple((w, frozenset(normalize_answer(w).split())) for w in s) for s in _FILLER_SPLIT
)
_FILLER_TOKENS: frozenset[str] = frozenset(t for s in _FILLER_WORDS for _, toks in s for t in toks)
_MAX_ROUNDS = 8


def statement(answer: str) -> str:
    """Return the answer line ``"The answer is {answer}."`` (whitespace in the answer collapsed)."""
    return f"The answer is {' '.join(answer.split())}."


def extract_stated_answer(reply: str) -> str | None:
    """Return the answer a perfect copier would take from a simulated reply.

    The inverse of :func:`statement` applied to the reply's first line.

    Args:
        reply: A reply produced by the simulated pool.

    Returns:
        The stated answer, or ``None`` for abstentions, uninformative replies and other text.
    """
    m = _STATEMENT_RE.fullmatch(reply.split("\n", 1)[0])
    if m is None:
        return None
    answer = m.group(1).strip()
    return answer or None


def answer_type(answer: str) -> AnswerType:
    """Classify a gold answer as ``yes/no``, ``year``, ``date``, ``number`` or ``entity`` (the rest).

    Examples: ``"Yes"`` -> yes/no; ``"1987"`` -> year; ``"3 March 1987"`` -> date; ``"1,200"`` -> number.
    """
    s = answer.strip()
    if normalize_answer(s) in ("yes", "no"):
        return "yes/no"
    if _YEAR_RE.fullmatch(s):
        return "year"
    if _NUMBER_RE.fullmatch(s):
        return "number"
    if _SLASH_DATE_RE.fullmatch(s) or (any(c.isdigit() for c in s) and _MONTH_RE.search(s.lower())):
        return "date"
    return "entity"


def gold_tokens(golds: Iterable[str]) -> frozenset[str]:
    """Return every token of the normalised gold answers (the words a scrubbed text must avoid)."""
    return frozenset(t for g in golds for t in normalize_answer(g).split())


def build_bank(rows: Sequence[QARow]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Build the distractor bank of a question set.

    Every gold answer of every row and sub-question is filed under its data source and its
    :func:`answer_type`. Each list is de-duplicated by normalised form and sorted, so the bank does not
    depend on the order of ``rows``.

    Args:
        rows: The environment's questions.

    Returns:
        ``{data_source: {answer_type: (answer, ...)}}``.
    """
    found: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        golds = [*row.golden_answers, *(a for sub in row.decomposition for a in sub.golden_answers)]
        by_type = found.setdefault(row.data_source, {})
        for g in golds:
            norm = normalize_answer(g)
            if not norm:
                continue
            slot = by_type.setdefault(answer_type(g), {})
            if norm not in slot or g < slot[norm]:
                slot[norm] = g
    return {
        source: {kind: tuple(slot[n] for n in sorted(slot)) for kind, slot in by_type.items()}
        for source, by_type in found.items()
    }


def _padded(golds: Sequence[str]) -> tuple[str, ...]:
    """Non-empty normalised golds with a space on each side (the token rule of ``contains_answer``)."""
    return tuple(f" {n} " for n in (normalize_answer(g) for g in golds) if n)


def _clashes(candidate: str, padded_golds: tuple[str, ...]) -> bool:
    """True if ``candidate`` and some gold contain one another under ``contains_answer``'s token rule.

    Equivalent to ``contains_answer(candidate, golds) or contains_answer(g, [candidate])`` for some g,
    with the golds normalised once (see :func:`_padded`).
    """
    norm = normalize_answer(candidate)
    if not norm:
        return True  # an empty answer would equal an empty gold under EM
    padded = f" {norm} "
    return any(g in padded or padded in g for g in padded_golds)


def _shift_number(answer: str, kind: AnswerType, rng: np.random.Generator) -> str | None:
    """Offset a year or number a little (years by 1-10, numbers by up to about 20 %)."""
    text = answer.strip()
    sign = 1 if rng.random() < 0.5 else -1
    if kind == "date":
        m = re.search(r"\d{4}", text) or re.search(r"\d+", text)
        if m is None:
            return None
        shifted = max(1, int(m.group(0)) + sign * int(rng.integers(1, 6)))
        return text[: m.start()] + str(shifted) + text[m.end() :]
    plain = text.replace(",", "")
    decimals = len(plain.split(".", 1)[1]) if "." in plain else 0
    value = float(plain)
    span = 10 if kind == "year" else max(3, int(abs(value) * 0.2))
    step = int(rng.integers(1, span + 1)) / 10**decimals
    new_value = value + sign * step
    if new_value < 0 <= value:
        new_value = value + step
    if decimals:
        return f"{new_value:.{decimals}f}"
    out = round(new_value)
    return f"{out:,}" if "," in text else str(out)


def _from_bank(candidates: tuple[str, ...], forbid: tuple[str, ...], rng: np.random.Generator) -> str | None:
    """Probe up to 32 consecutive bank entries from a random start; the first that does not clash."""
    if not candidates:
        return None
    n = len(candidates)
    start = int(rng.integers(n))
    for i in range(min(n, 32)):
        c = candidates[(start + i) % n]
        if not _clashes(c, forbid):
            return c
    return None


def _synthetic(gold: str, kind: AnswerType, forbid: tuple[str, ...], rng: np.random.Generator) -> str | None:
    """Type-based distractor when the bank has none: offsets for numbers/years/dates, else a name."""
    for _ in range(8):
        if kind in ("year", "number", "date"):
            c = _shift_number(gold, kind, rng)
        else:
            first, last = rng.integers(len(_FIRST_NAMES)), rng.integers(len(_LAST_NAMES))
            c = f"{_FIRST_NAMES[int(first)]} {_LAST_NAMES[int(last)]}"
        if c is not None and not _clashes(c, forbid):
            return c
    return None


def pick_distractor(
    golds: Sequence[str],
    row_golds: Sequence[str],
    bank: Mapping[str, tuple[str, ...]],
    rng: np.random.Generator,
) -> str | None:
    """Pick a wrong answer of the same type as the target's first gold.

    Yes/no flips. Years and numbers are offset a little, or (half the time, when the bank has some)
    taken from the bank. Dates and entities come from the bank, falling back to synthetic ones. A
    candidate is rejected if it matches (token containment, either direction) any gold of the row's
    targets; for yes/no only the target's own golds count, so the flip stays available.

    Args:
        golds: Gold answers of the target.
        row_golds: Gold answers of every target of the row (includes ``golds``).
        bank: Answer type -> candidate answers of the target's data source (may be empty).
        rng: Generator keyed on the target (shared distractor) or on the target and model (own).

    Returns:
        The distractor, or ``None`` when no acceptable candidate was found (the caller abstains).
    """
    gold = golds[0]
    kind = answer_type(gold)
    if kind == "yes/no":
        flip = "no" if normalize_answer(gold) == "yes" else "yes"
        return None if _clashes(flip, _padded(golds)) else flip
    candidates = bank.get(kind, ())
    forbid = _padded(row_golds)
    use_offset = rng.random() < 0.5
    if kind in ("year", "number") and (use_offset or not candidates):
        return _synthetic(gold, kind, forbid, rng) or _from_bank(candidates, forbid, rng)
    return _from_bank(candidates, forbid, rng) or _synthetic(gold, kind, forbid, rng)


def _scrub(text: str, forbidden: frozenset[str]) -> list[str]:
    """Split ``text`` into words and drop every word whose normalised tokens include a forbidden token.

    The normalised tokens of a whole text are the concatenation of its words' tokens (normalisation
    never joins or splits across whitespace), so one check of the whole text usually suffices.
    """
    words = text.split()
    if forbidden.isdisjoint(normalize_answer(text).split()):
        return words
    return [w for w in words if forbidden.isdisjoint(normalize_answer(w).split())]


def _filler(n: int, forbidden: frozenset[str], rng: np.random.Generator) -> list[str]:
    """Return ``n`` words of neutral filler sentences (fewer if the vocabulary is all forbidden)."""
    clean = forbidden.isdisjoint(_FILLER_TOKENS)  # fast path: nothing to scrub
    out: list[str] = []
    for _ in range(_MAX_ROUNDS):
        if len(out) >= n:
            break
        # Every filler sentence has at least 7 words, so n // 7 + 1 sentences suffice when unscrubbed.
        for idx in rng.integers(len(_FILLER_WORDS), size=(n - len(out)) // 7 + 1).tolist():
            if clean:
                out.extend(_FILLER_SPLIT[idx])
            else:
                out.extend(w for w, toks in _FILLER_WORDS[idx] if forbidden.isdisjoint(toks))
    return out[:n]


def compose_reply(
    first_line: str,
    topic: str,
    n_words: int,
    forbidden: frozenset[str],
    rng: np.random.Generator,
    *,
    scrub_first_line: bool,
) -> str:
    """Build a reply: the first line, then a sentence restating ``topic``, then filler, to ``n_words`` words.

    Args:
        first_line: The answer line, abstention or uninformative line.
        topic: Text to restate (the target's question, or the query of an unrelated call).
        n_words: Target word count of the whole reply (the first line is never cut).
        forbidden: Tokens no padding word may contain (tokens of every gold answer of the episode).
        rng: Generator for the filler choice.
        scrub_first_line: Also scrub the first line (abstentions and uninformative replies).

    Returns:
        The reply, neutralised (``docs/protocol.md`` §15): it never contains a reserved tag string.
    """
    head = _scrub(first_line, forbidden) if scrub_first_line else first_line.split()
    budget = n_words - len(head)
    body: list[str] = []
    if budget > 0:
        restated = _scrub(topic, forbidden)
        if restated:
            body = [*_scrub("Regarding", forbidden), *restated]
            body[-1] = body[-1].rstrip("?.!") + "."
        body = body[:budget]
        body.extend(_filler(budget - len(body), forbidden, rng))
    text = " ".join(head) + ("\n" + " ".join(body) if body else "")
    return neutralise(text)[0]


_SPLICE_RE = re.compile(r"<information>(.*?)</information>", re.DOTALL)


def answer_from_splice(observation: str) -> str | None:
    """The answer a copier takes from a RouterQA information splice (an env observation).

    Simulated replies state their answer in a fixed template (exact extraction, see
    :func:`extract_stated_answer`); for live replies the first sentence of the reply is used, cut to
    12 words. ``None`` for no splice, ``None`` splices (unknown model, failed call), abstentions and
    empty replies. Used by the scripted routers and by ``RouterQADiscrete-v0``'s answer action.
    """
    m = _SPLICE_RE.search(observation)
    if m is None:
        return None
    reply = m.group(1).strip()
    if not reply or reply == "None":
        return None
    stated = extract_stated_answer(reply)
    if stated is not None:
        return stated
    if reply.startswith((ABSTAIN_LINE[:8], UNRELATED_LINE[:9])):
        return None
    first = re.split(r"(?<=[.!?])\s|\n", reply, maxsplit=1)[0].strip().rstrip(".")
    return " ".join(first.split()[:12]) or None
