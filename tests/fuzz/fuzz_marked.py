"""A module that declares what is bindable: one listed name, one marked function, one neither."""

from __future__ import annotations

from os.path import join  # a re-export: never bindable

__pv_bindable__ = ("listed",)


def listed(x: int) -> int:
    """Bindable: listed in ``__pv_bindable__``."""
    return x


def marked(x: int) -> int:
    """Bindable: marked."""
    return x


marked.__pv_bindable__ = True  # type: ignore[attr-defined]


def unmarked(x: int) -> int:
    """Not bindable: neither listed nor marked."""
    return x


__all__ = ["join", "listed", "marked", "unmarked"]
