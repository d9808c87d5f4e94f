"""The lz4 codec: lz4 frame compression around another codec ("lz4+<its name>").

Loaded when an lz4 codec is first asked for (see tape.codecs), so that
`import tape` does not load lz4; lz4.frame is imported here, at the top, to
keep imports off the encode and decode path.
"""

from __future__ import annotations

from typing import Any

import lz4.frame

from tape.codecs import _LZ4_PREFIX, Codec, ParamCodec
from tape.errors import ArgumentTypeError, DecodeError

# The first byte of an lz4-wrapped payload says how the rest is stored.
_STORED = b"\x00"
_LZ4_FRAME = b"\x01"


class Lz4Codec:
    """lz4 frame compression around another codec, named "lz4+<its name>".

    Payloads shorter than `threshold` bytes, and those that compression would
    not shrink, are stored as they are: one leading byte says which, so small
    entries grow by that byte only.
    """

    def __init__(self, inner: Codec, *, threshold: int = 512, level: int = 0) -> None:
        if not isinstance(inner, Codec):
            raise ArgumentTypeError(f"lz4 wraps a codec, not {inner!r}")
        self.inner = inner
        self.name = _LZ4_PREFIX + inner.name
        self.threshold = threshold
        self.level = level

    @property
    def explicit(self) -> bool:
        """Whether a queue storing this codec is opened only by naming it (as for pickle)."""
        return bool(getattr(self.inner, "explicit", False))

    @property
    def params(self) -> bytes | None:
        return self.inner.params if isinstance(self.inner, ParamCodec) else b""

    def with_params(self, params: bytes) -> Lz4Codec:
        if not isinstance(self.inner, ParamCodec):
            return self
        return Lz4Codec(self.inner.with_params(params), threshold=self.threshold, level=self.level)

    def encode(self, obj: Any) -> bytes:
        data = self.inner.encode(obj)
        if len(data) >= self.threshold:
            packed: bytes = lz4.frame.compress(data, compression_level=self.level)
            if len(packed) < len(data):
                return _LZ4_FRAME + packed
        return _STORED + data

    def decode(self, buf: bytes | memoryview) -> Any:
        view = memoryview(buf)
        flag = view[:1].tobytes()
        if flag == _STORED:
            return self.inner.decode(view[1:])
        if flag != _LZ4_FRAME:
            raise DecodeError(f"not an lz4-wrapped payload (first byte {flag!r})")
        try:
            data = lz4.frame.decompress(view[1:])
        except (RuntimeError, ValueError) as exc:  # what lz4.frame raises for a bad frame
            raise DecodeError(f"not an lz4 frame: {exc}") from exc
        return self.inner.decode(data)
