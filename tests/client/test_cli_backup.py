"""The doozer command's backup and restore (SPEC §8), run as a subprocess
against a real node (the rest of the command: test_cli.py)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Any, Optional

import pytest

from doozer.client.cli import UsageError, parse_args
from cliutil import DOOZER, ROOT, doozer, failed, ok


# ----------------------------------------------------------------------
# backup (SPEC §8)


def _walk(node: Any, rev: int, headers: Optional[dict] = None) -> dict[str, tuple[int, bytes]]:
    """Every file of node's store at rev: path -> (rev, value)."""
    import base64

    status, walk = node.request("GET", f"/v1/walk?glob=/**&rev={rev}&limit=100000", headers=headers)
    assert status == 200, walk
    return {
        f["path"]: (f["rev"], base64.b64decode(f["value"]) if f.get("encoding") else f["value"].encode())
        for f in walk["files"]
    }


def _held(data: bytes) -> tuple[int, dict[str, tuple[int, bytes]]]:
    from doozer.store.backup import decode

    got = decode(data)
    return got.rev, {f.path: (f.rev, f.value) for f in got.store.walk("/**")}


@pytest.mark.slow
def test_backup_saves_every_file_at_its_rev_and_prints_the_rev(node: Any, tmp_path: Any) -> None:
    for i in range(20):
        assert node.request("PUT", f"/v1/store/bk/k{i}", bytes([i, 200]) * 100)[0] == 200
    target = tmp_path / "store.backup"
    target.write_bytes(b"an older backup")
    printed = ok(doozer(node, "backup", str(target)))
    assert re.fullmatch(r"\d+\n", printed)
    rev, files = _held(target.read_bytes())
    assert rev == int(printed)
    assert files == _walk(node, rev)
    assert all(files[f"/bk/k{i}"][1] == bytes([i, 200]) * 100 for i in range(20))
    assert os.listdir(tmp_path) == ["store.backup"]  # no temporary file left behind
    assert target.stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_backup_while_writes_run_holds_the_store_at_its_rev(node: Any, tmp_path: Any) -> None:
    """Every file in the backup is at its rev or below, and it holds exactly
    the files the store had at that rev, while a writer keeps changing them."""
    import threading

    for i in range(60):
        assert node.request("PUT", f"/v1/store/par/f{i}", bytes([i]) * 30_000)[0] == 200
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            node.request("PUT", f"/v1/store/par/f{i % 60}", b"w%d" % i)
            if i % 5 == 0:
                node.request("DELETE", f"/v1/store/par/f{(i * 7) % 60}")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        target = tmp_path / "during.backup"
        rev = int(ok(doozer(node, "backup", str(target))))
    finally:
        stop.set()
        thread.join(30)
    assert node.request("GET", "/v1/rev")[1]["rev"] > rev  # the writer went on past it
    backup_rev, files = _held(target.read_bytes())
    assert backup_rev == rev
    assert max(f_rev for f_rev, _ in files.values()) <= rev
    assert files == _walk(node, rev)


@pytest.mark.slow
def test_backup_into_a_missing_directory_exits_2_with_one_line(node: Any, tmp_path: Any) -> None:
    line = failed(doozer(node, "backup", str(tmp_path / "nope" / "x.backup")), 2)
    assert "cannot save the backup" in line and "No such file or directory" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_backup_needs_the_read_write_secret_and_writes_nothing_without_it(tmp_path: Any) -> None:
    from procutil import NodeProcess

    rw = {"Authorization": "Bearer rw-secret"}
    proc = NodeProcess(str(tmp_path / "node"),
                       env={"DOOZER_RWSECRET": "rw-secret", "DOOZER_ROSECRET": "ro-secret"})
    try:
        proc.start(wait=False)
        deadline = time.monotonic() + 30
        while True:
            try:
                if proc.request("PUT", "/v1/store/secret/k", b"v", headers=rw)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        target = tmp_path / "x.backup"
        for uri, code in ((f"doozer:?ca={proc.addr}&sk=ro-secret", "FORBIDDEN"),
                          (f"doozer:?ca={proc.addr}&sk=wrong", "UNAUTHORIZED"),
                          (f"doozer:?ca={proc.addr}", "UNAUTHORIZED")):
            assert code in failed(doozer(proc, "backup", str(target), uri=uri), 2)
            assert sorted(os.listdir(tmp_path)) == ["node"]
        rev = int(ok(doozer(proc, "backup", str(target), uri=f"doozer:?ca={proc.addr}&sk=rw-secret")))
        assert _held(target.read_bytes()) == (rev, _walk(proc, rev, rw))
    finally:
        proc.stop()


def test_a_damaged_backup_is_not_saved(tmp_path: Any) -> None:
    """The checksum is checked before anything is written (in process)."""
    import io

    from twisted.internet.defer import ensureDeferred, succeed

    from doozer.client.cli import run
    from doozer.store import Store
    from doozer.store.backup import encode

    good = encode(Store(), cluster="c")
    target = tmp_path / "x.backup"
    for data in (good[:-1], good[:30] + bytes([good[30] ^ 1]) + good[31:], b"<html>oops</html>"):
        client = type("C", (), {"current": "http://n:1", "backup": lambda self: succeed(data)})()
        out, err = io.BytesIO(), io.BytesIO()
        result: list = []
        ensureDeferred(run(parse_args(["backup", str(target)]), client, out, err)).addBoth(result.append)
        assert result == [2]
        assert err.getvalue().startswith(b"doozer: the backup from http://n:1 is unusable, nothing saved: ")
        assert err.getvalue().count(b"\n") == 1 and out.getvalue() == b""
        assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------
# restore (offline)


def _a_backup(tmp_path: Any) -> str:
    from doozer.store import backup, mutation
    from doozer.store.tree import Store

    store = Store()
    for n in range(5):
        store.apply([mutation.set_("c", n, f"/r/{n}", b"v", until=10).encode()])
    path = str(tmp_path / "b.doozer-backup")
    with open(path, "wb") as f:
        f.write(b"".join(backup.chunks(store, cluster="prod")))
    return path


def test_restore_options_are_its_own() -> None:
    opts = parse_args(["restore", "f", "--data-dir", "d", "--cluster=x"])
    assert (opts.command, opts.args, opts.flags) == ("restore", ["f"], {"data-dir": "d", "cluster": "x"})
    with pytest.raises(UsageError, match="unknown option --data-dir"):
        parse_args(["get", "/a", "--data-dir", "d"])
    with pytest.raises(UsageError, match="unknown option --nope"):
        parse_args(["restore", "f", "--nope", "d"])
    with pytest.raises(UsageError, match="--cluster needs a value"):
        parse_args(["restore", "f", "--cluster"])


def test_restore_makes_a_data_dir_and_says_how_to_start_it(tmp_path: Any) -> None:
    """Offline: an unusable URI is never looked at."""
    data = tmp_path / "data"
    result = subprocess.run(
        DOOZER + ["-a", "bogus://", "restore", _a_backup(tmp_path), "--data-dir", str(data)],
        capture_output=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert out.startswith(f"restored 5 files at rev 5 into {data}: a new cluster 'prod'")
    assert f"twistd doozer --data-dir {data} --cluster prod" in out
    assert sorted(os.listdir(data)) == ["identity", "snapshot-0000000000000000"]


@pytest.mark.parametrize("case", ["no-dir", "not-empty", "damaged"])
def test_restore_errors_are_one_line_and_exit_2(tmp_path: Any, case: str) -> None:
    backup = _a_backup(tmp_path)
    args = ["restore", backup, "--data-dir", str(tmp_path / "data")]
    if case == "no-dir":
        args = args[:2]
    elif case == "not-empty":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "x").write_bytes(b"")
    else:
        with open(backup, "r+b") as f:
            f.seek(40)
            f.write(b"\xff")
    result = subprocess.run(DOOZER + args, capture_output=True, timeout=30,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2 and result.stdout == b""
    line = result.stderr.decode()
    assert line.count("\n") == 1 and line.startswith("doozer: "), line
    expected = {"no-dir": "--data-dir DIR", "not-empty": "is not empty",
                "damaged": "is not a whole doozer backup"}[case]
    assert expected in line
