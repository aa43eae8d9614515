"""An immutable, indexed collection of question rows with unique ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from types import MappingProxyType
from typing import Any

from recal_gym.errors import InvalidData, UnknownName, close_matches_hint
from recal_gym.types import QARow

__all__ = ["QuestionSet", "check_unique"]


def check_unique(rows: Sequence[QARow], where: str) -> list[QARow]:
    """Return ``rows`` as a list, raising if two share a question id.

    Args:
        rows: The rows to check.
        where: What the rows come from, for the message (a file name).

    Raises:
        InvalidData: naming the duplicate id and both row numbers.
    """
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        first = seen.setdefault(row.question_id, number)
        if first != number:
            raise InvalidData(
                f"{where}: duplicate question id {row.question_id!r} (rows {first} and {number}); "
                "ids must be unique across datasets"
            )
    return list(rows)


class QuestionSet:
    """An immutable, indexed collection of :class:`QARow` with unique ids.

    >>> from recal_gym.data import load_embedded
    >>> qs = QuestionSet(load_embedded())
    >>> qs.datasets()
    ('fanoutqa_multi', 'fanoutqa_single')
    """

    __slots__ = ("_by_id", "_by_source", "_rows")
    _rows: tuple[QARow, ...]
    _by_id: MappingProxyType[str, QARow]
    _by_source: MappingProxyType[str, tuple[str, ...]]

    def __init__(self, rows: Iterable[QARow]) -> None:
        """Index ``rows``.

        Raises:
            InvalidData: if two rows share a question id, or an element is not a :class:`QARow`.
        """
        items = tuple(rows)
        for k, row in enumerate(items):
            if not isinstance(row, QARow):
                raise InvalidData(f"QuestionSet element {k} is a {type(row).__name__}, not a QARow")
        check_unique(items, "QuestionSet")
        by_source: dict[str, list[str]] = {}
        for row in items:
            by_source.setdefault(row.data_source, []).append(row.question_id)
        object.__setattr__(self, "_rows", items)
        object.__setattr__(self, "_by_id", MappingProxyType({r.question_id: r for r in items}))
        object.__setattr__(self, "_by_source", MappingProxyType({k: tuple(v) for k, v in by_source.items()}))

    def __setattr__(self, name: str, value: Any) -> None:
        """Refuse mutation."""
        raise AttributeError(f"QuestionSet is immutable; cannot set {name!r}")

    @property
    def rows(self) -> tuple[QARow, ...]:
        """Every row, in load order."""
        return self._rows

    def by_id(self, question_id: str) -> QARow:
        """Return the row with this id.

        Raises:
            UnknownName: (a ``KeyError``) naming close matches when the id is unknown.
        """
        row = self._by_id.get(question_id)
        if row is None:
            raise UnknownName(
                f"unknown question id {question_id!r} ({len(self)} questions)."
                + close_matches_hint(question_id, self._by_id)
            )
        return row

    def datasets(self) -> tuple[str, ...]:
        """Data-source names, sorted."""
        return tuple(sorted(self._by_source))

    def ids(self, data_source: str | None = None) -> tuple[str, ...]:
        """Question ids in load order, optionally of one data source.

        Raises:
            UnknownName: if ``data_source`` is not in the set.
        """
        if data_source is None:
            return tuple(self._by_id)
        ids = self._by_source.get(data_source)
        if ids is None:
            raise UnknownName(
                f"unknown data source {data_source!r}; available: {self.datasets()}."
                + close_matches_hint(data_source, self._by_source)
            )
        return ids

    def __len__(self) -> int:
        """Number of questions."""
        return len(self._rows)

    def __iter__(self) -> Iterator[QARow]:
        """Iterate the rows in load order."""
        return iter(self._rows)

    def __contains__(self, question_id: object) -> bool:
        """True if a row has this id."""
        return question_id in self._by_id

    def __repr__(self) -> str:
        """Short summary with per-dataset counts."""
        counts = ", ".join(f"{k}={len(v)}" for k, v in sorted(self._by_source.items()))
        return f"QuestionSet({len(self)} rows: {counts})"
