"""Checks of the arguments the public API takes: the right type, a value in range."""

from __future__ import annotations

import operator
from typing import Any

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
