"""The cost of sealing peer datagrams: ChaCha20-Poly1305 beside HMAC-SHA256.

Prints, for a small datagram (a PING) and a 1 KiB and a 32 KiB ACCEPT, the
microseconds per frame to seal and to open with the AEAD of
:mod:`doozer.consensus.seal` (what a node with a cluster key does now),
beside the HMAC-SHA256 tag the first builds used (integrity only, no
secrecy, no binding of the destination), and beside no protection at all.
timeit, best of 5; a benchmark, never a pass/fail test::

    python bench/peer_seal.py
"""

from __future__ import annotations

import hashlib
import hmac
import timeit

from doozer.consensus import messages
from doozer.consensus.seal import Seal

KEY = b"k" * 32


def main() -> None:
    seal = Seal([KEY])
    cases = {
        "PING": messages.Ping(123456, 123460, ()),
        "ACCEPT 1 KiB": messages.Accept(123457, (0, "NODEAAAAAAAAAAAA"), b"v" * 1024),
        "ACCEPT 32 KiB": messages.Accept(123458, (0, "NODEAAAAAAAAAAAA"), b"v" * 32768),
    }
    print(f"{'datagram':<15} {'bytes':>6} {'plain':>8} {'HMAC tag':>9} {'HMAC chk':>9} {'AEAD seal':>10} {'AEAD open':>10}   (µs per frame)")
    for name, message in cases.items():
        body = messages.pack("local", "CLUSTERID", "NODEAAAAAAAAAAAA", 1_000_000, message)
        frame = seal.seal(body, sender="NODEAAAAAAAAAAAA", incarnation=7, counter=1, destination="NODEBBBBBBBBBBBB")
        tag = hmac.new(KEY, b"\x01" + body, hashlib.sha256).digest()
        n = 20000 if len(body) < 4096 else 2000

        def best(stmt: object) -> float:
            return min(timeit.repeat(stmt, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]

        plain = best(lambda: messages.pack("local", "CLUSTERID", "NODEAAAAAAAAAAAA", 1_000_000, message))
        hmac_tag = best(lambda: hmac.new(KEY, b"\x01" + body, hashlib.sha256).digest())
        hmac_check = best(lambda: hmac.compare_digest(tag, hmac.new(KEY, b"\x01" + body, hashlib.sha256).digest()))
        aead_seal = best(lambda: seal.seal(body, sender="NODEAAAAAAAAAAAA", incarnation=7, counter=1,
                                          destination="NODEBBBBBBBBBBBB"))
        aead_open = best(lambda: seal.open(frame, "NODEBBBBBBBBBBBB"))
        print(f"{name:<15} {len(body):>6} {plain:>8.2f} {hmac_tag:>9.2f} {hmac_check:>9.2f} {aead_seal:>10.2f} {aead_open:>10.2f}")


if __name__ == "__main__":
    main()
