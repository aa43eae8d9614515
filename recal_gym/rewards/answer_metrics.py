"""Answer metrics: SQuAD-style normalisation, exact match, token F1 and gold containment.

Implements ``docs/rewards.md`` §3 (normalisation), §4 (EM and F1, with Router-R1's yes/no/noanswer rule
and its "both empty scores 0" rule) and §5 (containment of a gold answer in a block of text).
Everything here is a pure function of strings (stdlib only).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "ContainMode",
    "contains_answer",
    "contains_normalized",
    "exact_match",
    "exact_match_normalized",
    "f1_normalized",
    "f1_score",
    "normalize_answer",
]

ContainMode = Literal["token", "substring"]

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)  # the 32 ASCII punctuation characters only
_PUNCT_BYTES = string.punctuation.encode("ascii")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")  # str pattern: \b follows Unicode word characters
_SPECIAL_WORDS = frozenset({"yes", "no", "noanswer"})


def _lower_unpunct(s: str) -> str:
    """``s.lower()`` without the 32 ASCII punctuation characters (steps 1-2 of :func:`normalize_answer`).

    An ASCII string (the common case) is filtered as bytes, which is several times faster than
    ``str.translate`` and deletes exactly the same characters.
    """
    low = s.lower()
    if low.isascii():
        return low.encode("ascii").translate(None, _PUNCT_BYTES).decode("ascii")
    return low.translate(_PUNCT_TABLE)


def normalize_answer(s: str) -> str:
    """Normalise an answer string, SQuAD style (``docs/rewards.md`` §3).

    Steps, in order: Unicode-aware lower-casing; deletion of the 32 ASCII punctuation characters
    (Unicode punctuation such as U+2019 is kept); replacement of each whole word ``a``, ``an`` or
    ``the`` by a space; whitespace collapse and trim.

    Args:
        s: Any string.

    Returns:
        The normalised string, e.g. ``"The Beatles!"`` -> ``"beatles"``, ``"a-ha"`` -> ``"aha"``.
    """
    s = _ARTICLES_RE.sub(" ", _lower_unpunct(s))
    return " ".join(s.split())


def exact_match(prediction: str | None, golden: Sequence[str]) -> float:
    """Return 1.0 if the normalised prediction equals the normalised form of any gold answer.

    Args:
        prediction: The extracted final answer, or ``None`` when the episode has no answer.
        golden: The accepted gold answers.

    Returns:
        1.0 or 0.0; 0.0 for ``None``.
    """
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction)
    return 1.0 if any(p == normalize_answer(g) for g in golden) else 0.0


def _f1_single(p: str, q: str) -> float:
    """Token F1 of two already normalised strings (Router-R1's rules)."""
    if (p in _SPECIAL_WORDS or q in _SPECIAL_WORDS) and p != q:
        return 0.0
    p_tokens = p.split()
    q_tokens = q.split()
    if p == q:
        # Identical token lists: c = |p| = |q|, P = R = 1.0, and 2·1·1/(1+1) is exactly 1.0 (0 when empty).
        return 1.0 if p_tokens else 0.0
    if set(p_tokens).isdisjoint(q_tokens):
        return 0.0  # c = 0 (the usual case for a wrong answer): no multiset work needed
    common = sum((Counter(p_tokens) & Counter(q_tokens)).values())
    if common == 0:  # also covers two empty strings (Router-R1 scores 0, SQuAD would score 1)
        return 0.0
    precision = common / len(p_tokens)
    recall = common / len(q_tokens)
    # Exactly this order: 2c/(|p|+|q|) is algebraically equal but differs in the last bit.
    return (2 * precision * recall) / (precision + recall)


def f1_score(prediction: str | None, golden: Sequence[str]) -> float:
    """Return the maximum token F1 of the prediction over the gold answers (``docs/rewards.md`` §4).

    For each gold g, with p = norm(prediction) and q = norm(g): if p or q is one of ``yes``, ``no``,
    ``noanswer`` and p != q the score is 0; otherwise with c the multiset token overlap, 0 when c = 0,
    else P = c/|p|, R = c/|q| and F1 = 2·P·R/(P+R).

    Args:
        prediction: The extracted final answer, or ``None`` when the episode has no answer.
        golden: The accepted gold answers.

    Returns:
        A float in [0, 1]; 0.0 for ``None`` or an empty gold list.
    """
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction)
    best = 0.0
    for g in golden:
        best = max(best, _f1_single(p, normalize_answer(g)))
    return best


def contains_answer(text: str, golden: Sequence[str], mode: ContainMode = "token") -> bool:
    """Return True if some non-empty normalised gold answer occurs in the normalised text.

    ``docs/rewards.md`` §5. With ``mode="token"`` the gold must sit at token boundaries
    (``" " + G + " "`` in ``" " + B + " "``), so gold ``1`` does not match ``1990``; ``"substring"``
    drops the boundaries (Router-R1's ``subem``).

    Args:
        text: The block of text to search (e.g. an information block's content).
        golden: The gold answers.
        mode: ``"token"`` or ``"substring"``.

    Returns:
        Whether any gold answer is contained.

    Raises:
        ValueError: if ``mode`` is not one of the two modes.
    """
    if mode not in ("token", "substring"):
        raise ValueError(f"contains_answer: mode must be 'token' or 'substring', got {mode!r}")
    b = normalize_answer(text)
    if mode == "token":
        b = f" {b} "
    for g in golden:
        q = normalize_answer(g)
        if not q:
            continue
        if (f" {q} " if mode == "token" else q) in b:
            return True
    return False


# --- forms over already normalised strings (the scorer normalises each string once per episode) --------


def exact_match_normalized(p: str | None, golden_normalized: Sequence[str]) -> float:
    """:func:`exact_match` of a normalised prediction (``None`` = no answer) against normalised golds."""
    if p is None:
        return 0.0
    return 1.0 if p in golden_normalized else 0.0


def f1_normalized(p: str | None, golden_normalized: Sequence[str]) -> float:
    """:func:`f1_score` of a normalised prediction (``None`` = no answer) against normalised golds."""
    if p is None:
        return 0.0
    best = 0.0
    for q in golden_normalized:
        best = max(best, _f1_single(p, q))
    return best


def contains_normalized(text: str, golden_normalized: Sequence[str], mode: ContainMode = "token") -> bool:
    """:func:`contains_answer` of raw ``text`` against already normalised golds (empty golds never match)."""
    lowered = _lower_unpunct(text)
    # Every token of normalize_answer(text) is a substring of `lowered`; a gold whose first token is not
    # one cannot match, so most replies skip the article regex (exact, and the common case).
    if not any(q and q.split(" ", 1)[0] in lowered for q in golden_normalized):
        return False
    b = " ".join(_ARTICLES_RE.sub(" ", lowered).split())
    if mode == "token":
        b = f" {b} "
        return any(q and f" {q} " in b for q in golden_normalized)
    return any(q and q in b for q in golden_normalized)
