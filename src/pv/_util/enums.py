"""String enums whose members are ordered by declaration: the first member ranks lowest."""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

_E = TypeVar("_E", bound="OrderedStrEnum")


class OrderedStrEnum(str, Enum):
    """A ``str`` enum (its JSON is its value) whose order is the order of declaration.

    Declare members in precedence order and ``min`` picks the deciding one: a
    status enum lists its worst outcome first.
    """

    @property
    def rank(self) -> int:
        """The position of this member in its enum's declaration."""
        return type(self)._member_names_.index(self.name)

    def _compare(self, other: Any) -> int:
        if type(other) is not type(self):
            return NotImplemented  # type: ignore[return-value]
        return self.rank - other.rank

    def __lt__(self, other: Any) -> bool:
        diff = self._compare(other)
        return diff if diff is NotImplemented else diff < 0

    def __le__(self, other: Any) -> bool:
        diff = self._compare(other)
        return diff if diff is NotImplemented else diff <= 0

    def __gt__(self, other: Any) -> bool:
        diff = self._compare(other)
        return diff if diff is NotImplemented else diff > 0

    def __ge__(self, other: Any) -> bool:
        diff = self._compare(other)
        return diff if diff is NotImplemented else diff >= 0

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def first(cls: type[_E], found: Any, default: _E) -> _E:
        """The lowest-ranked member among ``found`` (members or their values), or ``default``."""
        members = [cls(item) for item in found]
        return min(members) if members else default
