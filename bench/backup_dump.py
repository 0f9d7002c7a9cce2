"""How long a backup holds the reactor, for a store at the default quota.

    python bench/backup_dump.py [--quota-bytes 1073741824] [--value 32768]

Fills a store (in process, no consensus) with files of ``--value`` bytes
until files plus history reach ``--quota-bytes`` (default: ``--quota-bytes``'
default, 1 GiB), then times what ``GET /v1/backup`` does: the capture (one
reactor turn, at one rev), the longest single piece (one reactor turn while
streaming), the whole stream, and ``decode`` (what ``doozer backup`` does
before it saves). ``--value 100`` gives many small files instead. Prints
figures; never pass/fail.
"""

from __future__ import annotations

import argparse
import time

from doozer.node.admission import QUOTA_BYTES
from doozer.store import Store
from doozer.store import backup
from doozer.store import mutation as mut


def fill(quota: int, value_size: int, hist: int) -> Store:
    store = Store(hist)
    n = 0
    while store.size + value_size + 40 <= quota:
        path = f"/bench/d{n % 1000:03d}/f{n:08d}"
        value = n.to_bytes(8, "big") * (value_size // 8)
        store.apply([mut.set_("bench", n, path, value, until=1 << 60).encode()])
        n += 1
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quota-bytes", type=int, default=QUOTA_BYTES)
    parser.add_argument("--value", type=int, default=32768)
    parser.add_argument("--hist", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    store = fill(args.quota_bytes, args.value, args.hist)
    print(f"store: {store.file_count} files, {store.size / 2**20:.0f} MiB with history, "
          f"rev {store.rev} (filled in {time.perf_counter() - started:.1f} s)")

    t0 = time.perf_counter()
    pieces = backup.chunks(store, cluster="bench")
    t1 = time.perf_counter()
    longest, total, count = 0.0, 0, 0
    out = []
    while True:
        a = time.perf_counter()
        piece = next(pieces, None)
        longest = max(longest, time.perf_counter() - a)
        if piece is None:
            break
        total += len(piece)
        count += 1
        out.append(piece)
    t2 = time.perf_counter()
    print(f"capture (one reactor turn):      {1000 * (t1 - t0):8.1f} ms")
    print(f"longest piece (one turn):        {1000 * longest:8.1f} ms  ({count} pieces)")
    print(f"whole stream, packed and hashed: {1000 * (t2 - t1):8.1f} ms  ({total / 2**20:.0f} MiB)")
    data = b"".join(out)
    t3 = time.perf_counter()
    contents = backup.decode(data)
    t4 = time.perf_counter()
    print(f"decode (verify and load):        {1000 * (t4 - t3):8.1f} ms  (rev {contents.rev})")


if __name__ == "__main__":
    main()
