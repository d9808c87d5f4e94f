"""Checks of the arguments the public API takes: the right type, a value in range."""

from __future__ import annotations

import operator
import reprlib
from typing import Any

from tape._native import INDEX_MAX
from tape.errors import ArgumentError, ArgumentTypeError


def as_int(value: Any, what: str) -> int:
    """`value` as an int; bool and non-integers are refused."""
    if isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be an int, not {type(value).__name__}") from None


def as_seconds(timeout: Any) -> float:
    """A timeout in seconds, checked."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ArgumentError(f"timeout must be >= 0, not {timeout}")
    return float(timeout)


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 60


def shown(value: Any) -> str:
    """`value` for a message: its repr, cut short when long."""
    return _SHOWN.repr(value)


def as_index(value: Any, what: str) -> int:
    """An index: an int from 0 to 2**63-1."""
    index = as_int(value, what)
    if not 0 <= index <= INDEX_MAX:
        raise ArgumentError(f"{what} is an index, between 0 and 2**63-1, not {shown(index)}")
    return index


def as_name(name: Any, what: str, limit: int) -> bytes:
    """A name stored in the queue, as UTF-8: a str of 1 to limit - 1 bytes, without NUL."""
    if not isinstance(name, str):
        raise ArgumentError(f"{what} must be a str, not {type(name).__name__}")
    try:
        data = name.encode()
    except UnicodeEncodeError:
        raise ArgumentError(f"{what} must be text that UTF-8 can hold, not {shown(name)}") from None
    if not 0 < len(data) < limit or b"\0" in data:
        raise ArgumentError(f"{what} must be 1 to {limit - 1} bytes of UTF-8 without NUL, not {shown(name)}")
    return data
