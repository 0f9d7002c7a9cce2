"""Sealing peer datagrams with the cluster key: an AEAD from ``cryptography``.

With a cluster key every datagram is encrypted and authenticated with
ChaCha20-Poly1305 (SPEC §12). A sealed frame is::

    version (1) | key id (4) | flags (1) | sender length (1) | sender |
    incarnation (8) | counter (8) | ciphertext + tag (16)

- The **key id** (the first bytes of the key's SHA-256) names which of the
  cluster's keys sealed it: a key file may hold several (the first seals,
  all open), so keys can be changed with a rolling restart.
- Each sender seals with its own subkey, derived with HKDF from the cluster
  key, its id and its **incarnation** (a process's start, or the data dir's
  count of starts): the 96-bit nonce is then the sender's datagram counter,
  which never repeats within one incarnation, and no two senders ever share
  a (key, nonce) pair.
- The associated data is the clear header plus the **destination** node's
  id, so a datagram captured on its way to one node opens on no other, and
  on no later process with another id. A datagram sent to an address whose
  node is not known yet (discovery) says so in its flags and binds an
  empty destination; only discovery messages may travel that way.

Nothing is parsed before the tag is checked except the clear header, which
is bounded and checked for shape.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from typing import NamedTuple, Optional, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The version byte of a sealed frame (1 is an unsealed one, without a key).
SEALED = 2
#: Flag: the datagram is addressed to an address, not to a node id.
TO_ADDRESS = 1
KEY_ID_SIZE = 4
TAG_SIZE = 16
_COUNTERS = struct.Struct(">QQ")
#: Subkeys kept (senders come and go: a restart is a new sender).
MAX_SUBKEYS = 1024


def key_id(key: bytes) -> bytes:
    """The 4 bytes that name ``key`` in a frame (not a secret: a hash)."""
    return hashlib.sha256(b"doozer key id\x00" + key).digest()[:KEY_ID_SIZE]


class Opened(NamedTuple):
    """A frame that opened: who sent it, when, and what."""

    sender: str
    incarnation: int
    counter: int
    to_address: bool
    body: bytes


class Seal:
    """Seals and opens frames with a cluster's keys.

    :param keys: the cluster keys; the first seals, every one opens.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a seal needs at least one key")
        self._keys = {key_id(k): k for k in keys}
        self._sealing_id = key_id(keys[0])
        self._subkeys: OrderedDict[tuple[bytes, str, int], ChaCha20Poly1305] = OrderedDict()

    def _subkey(self, kid: bytes, sender: str, incarnation: int) -> ChaCha20Poly1305:
        entry = (kid, sender, incarnation)
        aead = self._subkeys.get(entry)
        if aead is None:
            info = b"doozer peer datagram\x00" + sender.encode() + struct.pack(">Q", incarnation)
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
                self._keys[kid]
            )
            aead = self._subkeys[entry] = ChaCha20Poly1305(derived)
            if len(self._subkeys) > MAX_SUBKEYS:
                self._subkeys.popitem(last=False)
        else:
            self._subkeys.move_to_end(entry)
        return aead

    def seal(
        self,
        body: bytes,
        *,
        sender: str,
        incarnation: int,
        counter: int,
        destination: Optional[str],
    ) -> bytes:
        """The frame carrying ``body`` from ``sender`` to node ``destination``
        (None: to an address whose node is not known, discovery only)."""
        name = sender.encode()
        flags = TO_ADDRESS if destination is None else 0
        header = (
            bytes((SEALED,))
            + self._sealing_id
            + bytes((flags, len(name)))
            + name
            + _COUNTERS.pack(incarnation, counter)
        )
        ad = header + (destination or "").encode()
        nonce = b"\x00\x00\x00\x00" + struct.pack(">Q", counter)
        return header + self._subkey(self._sealing_id, sender, incarnation).encrypt(nonce, body, ad)

    def open(self, frame: bytes, me: str) -> Optional[Opened]:
        """Check and decrypt a frame addressed to node ``me`` (or to any
        address, when its flags say so); None when it does not open."""
        if len(frame) < 7 or frame[0] != SEALED:
            return None
        kid = frame[1 : 1 + KEY_ID_SIZE]
        if kid not in self._keys:
            return None
        flags, length = frame[5], frame[6]
        end = 7 + length + _COUNTERS.size
        if flags & ~TO_ADDRESS or length == 0 or len(frame) < end + TAG_SIZE:
            return None
        try:
            sender = frame[7 : 7 + length].decode("ascii")
        except UnicodeDecodeError:
            return None
        incarnation, counter = _COUNTERS.unpack_from(frame, 7 + length)
        header = frame[:end]
        to_address = bool(flags & TO_ADDRESS)
        ad = header + (b"" if to_address else me.encode())
        nonce = b"\x00\x00\x00\x00" + struct.pack(">Q", counter)
        try:
            body = self._subkey(kid, sender, incarnation).decrypt(nonce, frame[end:], ad)
        except InvalidTag:
            return None
        return Opened(sender, incarnation, counter, to_address, body)
