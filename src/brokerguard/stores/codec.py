"""Records as bytes: one encoding for every store, so a record reads the same from any of them.

A record is a msgspec Struct of a kind listed in :data:`~brokerguard.engine.state.KINDS`; its bytes
are MessagePack. The record goes through :func:`msgspec.to_builtins` first, which writes
timestamps as RFC 3339 text: MessagePack's own timestamp type keeps the instant but drops the UTC
offset, and the offset is what gives a waiting sign-in its local hour when its challenge is
answered after a restart.
"""

from __future__ import annotations

from typing import Any

import msgspec

from brokerguard.engine.state import KINDS

__all__ = ["decode", "encode"]

_encoder = msgspec.msgpack.Encoder()
_decoders = {kind: msgspec.msgpack.Decoder(cls) for kind, cls in KINDS.items()}


def encode(record: msgspec.Struct) -> bytes:
    # bytes stay bytes (MessagePack has a binary type); datetimes become ISO strings
    return _encoder.encode(msgspec.to_builtins(record, builtin_types=(bytes, bytearray)))


def decode(kind: str, data: bytes) -> Any:
    """The record of ``kind`` in ``data``; raises msgspec's errors when the bytes do not fit."""
    return _decoders[kind].decode(data)
