"""Finding what part of a value a codec cannot hold, for the message of an EncodeError.

Shared by the msgpack and json codecs; only called once encoding failed.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterator
from typing import Any


def first_objection(obj: Any, objection: Callable[[Any, bool], str | None]) -> str | None:
    """Where in `obj` the first part `objection` refuses is, and why; None if nothing is.

    `objection(part, is_key)` describes what is wrong with one value or map
    key. Only called once encoding failed, so it favours clear over fast.
    """
    seen: set[int] = set()

    def walk(part: Any, path: str) -> Iterator[str]:
        why = objection(part, False)
        if why is not None:
            yield f"{path}: {why}"
            return
        if id(part) in seen:  # shared, or a reference cycle
            return
        if isinstance(part, dict):
            seen.add(id(part))
            for key, value in part.items():
                why = objection(key, True)
                if why is not None:
                    yield f"{path}: {why}"
                    return
                yield from walk(value, f"{path}[{reprlib.repr(key)}]")
        elif isinstance(part, (list, tuple)):
            seen.add(id(part))
            for k, value in enumerate(part):
                yield from walk(value, f"{path}[{k}]")

    try:
        return next(walk(obj, "value"), None)
    except RecursionError:
        return "value: nested too deeply"
