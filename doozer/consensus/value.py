"""The value of a consensus instance: a batch of items (opaque bytes).

An instance decides one value; the store reads its items as mutations, the
consensus core never looks inside them. A no-op is the empty batch.
"""

from __future__ import annotations

import msgpack


class MalformedValue(ValueError):
    """Bytes that are not a batch."""


def encode_batch(items: list[bytes]) -> bytes:
    """The value of one consensus instance: a list of encoded mutations."""
    data: bytes = msgpack.packb(items, use_bin_type=True)
    return data


def decode_batch(data: bytes) -> list[bytes]:
    """Inverse of :func:`encode_batch`.

    :raises MalformedValue: when ``data`` is not a list of byte strings.
    """
    try:
        items = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise MalformedValue(f"undecodable batch: {e}") from None
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        raise MalformedValue("a batch is a list of byte strings")
    return items


#: The value of a no-op instance: an empty batch.
NOOP: bytes = encode_batch([])
