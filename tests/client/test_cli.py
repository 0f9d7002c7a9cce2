"""The doozer command (SPEC §4), run as a subprocess against a real node."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Any

import pytest

from doozer.client.cli import COMMANDS, UsageError, parse_args, parse_duration

from cliutil import DOOZER, ROOT, doozer, failed, ok


# ----------------------------------------------------------------------
# parsing (in process)


@pytest.mark.parametrize(
    "text, seconds",
    [("30", 30.0), ("30s", 30.0), ("1m30s", 90.0), ("1.5s", 1.5), ("250ms", 0.25), ("1h", 3600.0)],
)
def test_durations_are_go_style(text: str, seconds: float) -> None:
    """-t accepts plain seconds and Go-style durations."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "-1s", "1x", "s", "1m30"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    """Anything else is a usage error."""
    with pytest.raises(UsageError):
        parse_duration(text)


def test_options_before_and_after_the_command_and_negative_revs() -> None:
    """Options may come anywhere; -1 as REV is an argument, not an option."""
    opts = parse_args(["-a", "http://h:1", "set", "/a", "-1", "-r", "5"])
    assert (opts.uri, opts.rev, opts.command, opts.args) == ("http://h:1", 5, "set", ["/a", "-1"])


def test_an_offline_command_runs_with_no_client(monkeypatch: Any) -> None:
    """A command registered offline gets ``ctx.client`` None and its
    arguments; its errors are one line and exit 2 like any other's."""
    import io

    from twisted.internet.defer import ensureDeferred

    from doozer.client import commands
    from doozer.client.cli import run

    monkeypatch.setitem(commands.COMMANDS, "probe", None)  # removed again afterwards
    seen: list = []

    @commands.command("probe", "FILE", "test", "test", offline=True)
    async def _probe(ctx: commands.Context, path: str) -> None:
        seen.append((ctx.client, path))
        if path == "bad":
            raise commands.CommandError("cannot probe bad")
        ctx.line("probed")

    assert commands.COMMANDS["probe"].offline and not commands.COMMANDS["get"].offline
    for path, status, printed in (("f", 0, b"probed\n"), ("bad", 2, b"")):
        out, err = io.BytesIO(), io.BytesIO()
        result: list = []
        options = commands.Options(command="probe", args=[path])
        ensureDeferred(run(options, None, out, err)).addBoth(result.append)
        assert result == [status] and out.getvalue() == printed
    assert seen == [(None, "f"), (None, "bad")]
    assert err.getvalue() == b"doozer: cannot probe bad\n"


def test_help_needs_no_cluster() -> None:
    """help is offline: an unusable URI is never looked at."""
    result = subprocess.run(DOOZER + ["-a", "bogus://", "help", "get"], capture_output=True,
                            env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout.startswith(b"usage: doozer [-a URI] [-r REV] [-t DURATION] get PATH\n")


# ----------------------------------------------------------------------
# against a real node


@pytest.mark.slow
def test_add_then_get_prints_the_body(node: Any) -> None:
    """`echo "hello, world" | doozer add /message` then `doozer get /message` prints it."""
    rev = ok(doozer(node, "add", "/message", stdin=b"hello, world\n"))
    assert re.fullmatch(r"\d+\n", rev)
    assert ok(doozer(node, "get", "/message")) == "hello, world\n"


@pytest.mark.slow
def test_add_of_an_existing_file_is_a_rev_mismatch(node: Any) -> None:
    """add on an existing file exits 1 with one line on stderr."""
    ok(doozer(node, "add", "/taken", stdin=b"x"))
    line = failed(doozer(node, "add", "/taken", stdin=b"y"), 1)
    assert "REV_MISMATCH" in line


@pytest.mark.slow
def test_set_with_the_current_rev_succeeds_and_a_stale_rev_exits_1(node: Any) -> None:
    """set PATH REV prints the new rev; a REV older than the file's exits 1."""
    first = int(ok(doozer(node, "set", "/s", "-1", stdin=b"one")))
    second = int(ok(doozer(node, "set", "/s", str(first), stdin=b"two")))
    assert second > first
    failed(doozer(node, "set", "/s", str(first), stdin=b"three"), 1)
    assert ok(doozer(node, "get", "/s")) == "two"


@pytest.mark.slow
def test_set_with_a_non_integer_rev_exits_2(node: Any) -> None:
    """A malformed REV is a usage error: exit 2."""
    failed(doozer(node, "set", "/s", "abc", stdin=b""), 2)


@pytest.mark.slow
def test_del_removes_and_a_missing_file_exits_2(node: Any) -> None:
    """del PATH REV deletes; get afterwards and del of a missing file exit 2."""
    ok(doozer(node, "add", "/d1", stdin=b"x"))
    assert ok(doozer(node, "del", "/d1", "-1")) == ""
    assert "NOENT" in failed(doozer(node, "get", "/d1"), 2)
    failed(doozer(node, "del", "/d1", "-1"), 2)


@pytest.mark.slow
def test_del_with_a_stale_rev_exits_1(node: Any) -> None:
    """del with a REV older than the file's exits 1."""
    rev = int(ok(doozer(node, "add", "/d2", stdin=b"x")))
    ok(doozer(node, "set", "/d2", "-1", stdin=b"y"))
    failed(doozer(node, "del", "/d2", str(rev)), 1)


@pytest.mark.slow
def test_rev_prints_the_current_rev(node: Any) -> None:
    """rev prints an integer that grows with writes."""
    before = int(ok(doozer(node, "rev")))
    ok(doozer(node, "set", "/r", "-1", stdin=b""))
    assert int(ok(doozer(node, "rev"))) > before


@pytest.mark.slow
def test_stat_prints_rev_len_for_files_and_d_n_for_directories(node: Any) -> None:
    """stat prints 'REV LEN' for a file and 'd N' for a directory."""
    rev = int(ok(doozer(node, "set", "/st/f", "-1", stdin=b"12345")))
    ok(doozer(node, "set", "/st/g", "-1", stdin=b""))
    assert ok(doozer(node, "stat", "/st/f")) == f"{rev} 5\n"
    assert ok(doozer(node, "stat", "/st")) == "d 2\n"
    failed(doozer(node, "stat", "/st/none"), 2)


@pytest.mark.slow
def test_get_and_stat_with_r_read_an_old_rev(node: Any) -> None:
    """-r REV makes get and stat read the store as of REV."""
    rev = int(ok(doozer(node, "set", "/old", "-1", stdin=b"before")))
    ok(doozer(node, "set", "/old", "-1", stdin=b"after!"))
    assert ok(doozer(node, "-r", str(rev), "get", "/old")) == "before"
    assert ok(doozer(node, "-r", str(rev), "stat", "/old")) == f"{rev} 6\n"


@pytest.mark.slow
def test_find_prints_every_file_and_directory_under_path(node: Any) -> None:
    """find PATH prints PATH, its directories and files, parents first."""
    for p in ("/f/a/x", "/f/a/y", "/f/b", "/f/a-z/q"):
        ok(doozer(node, "set", p, "-1", stdin=b""))
    assert ok(doozer(node, "find", "/f")).splitlines() == [
        "/f", "/f/a", "/f/a/x", "/f/a/y", "/f/a-z", "/f/a-z/q", "/f/b",
    ]
    assert ok(doozer(node, "find", "/f/b")) == "/f/b\n"
    failed(doozer(node, "find", "/f/none"), 2)


@pytest.mark.slow
def test_touch_rewrites_the_same_body_with_a_new_rev(node: Any) -> None:
    """touch keeps the body and raises the rev; a missing file is created empty."""
    rev = int(ok(doozer(node, "set", "/t", "-1", stdin=b"keep")))
    assert ok(doozer(node, "touch", "/t")) == ""
    assert ok(doozer(node, "get", "/t")) == "keep"
    assert int(ok(doozer(node, "stat", "/t")).split()[0]) > rev
    ok(doozer(node, "touch", "/t-new"))
    assert ok(doozer(node, "stat", "/t-new")).split()[1] == "0"


@pytest.mark.slow
def test_wait_prints_the_next_change_in_doozer_format(node: Any) -> None:
    """wait GLOB with -r prints 'PATH REV set LEN', the body and a line feed."""
    rev = int(ok(doozer(node, "set", "/wt", "-1", stdin=b"body")))
    assert ok(doozer(node, "-r", str(rev), "wait", "/wt")) == f"/wt {rev} set 4\nbody\n"


@pytest.mark.slow
def test_wait_prints_deletes_too(node: Any) -> None:
    """A delete is printed as 'PATH REV del 0' and an empty body."""
    ok(doozer(node, "set", "/wd", "-1", stdin=b"x"))
    rev = int(ok(doozer(node, "rev")))
    ok(doozer(node, "del", "/wd", "-1"))
    out = ok(doozer(node, "-r", str(rev + 1), "wait", "/wd"))
    assert re.fullmatch(r"/wd \d+ del 0\n\n", out)


@pytest.mark.slow
def test_wait_with_t_gives_up_with_status_2(node: Any) -> None:
    """wait -t 1s with no change exits 2 after about a second."""
    start = time.monotonic()
    line = failed(doozer(node, "-t", "1s", "wait", "/never"), 2)
    assert "TIMEOUT" in line
    assert time.monotonic() - start >= 0.9  # it waited its second


def _sigint_as_at_a_terminal() -> None:
    """SIGINT's default action in the child, as for a command typed at a
    terminal. A test run started as a background job of a script (``cmd &``)
    inherits SIGINT ignored, as POSIX wants; Python and Twisted keep it
    ignored, so ``watch`` rightly outlived the SIGINT and the test hung."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_watch_prints_changes_until_sigint_and_exits_cleanly(node: Any) -> None:
    """watch prints each change as it happens and exits 0 without a traceback on SIGINT."""
    environ = dict(os.environ, PYTHONPATH=ROOT)
    rev = int(ok(doozer(node, "rev")))
    # -r: from the next rev on, so the changes below are printed however
    # long the process takes to start
    proc = subprocess.Popen(DOOZER + ["-a", f"doozer:?ca={node.addr}", "-r", str(rev + 1),
                                      "watch", "/wch/**"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
                            preexec_fn=_sigint_as_at_a_terminal)
    try:
        r1 = int(ok(doozer(node, "set", "/wch/a", "-1", stdin=b"1")))
        r2 = int(ok(doozer(node, "set", "/wch/b/c", "-1", stdin=b"22")))
        expected = f"/wch/a {r1} set 1\n1\n/wch/b/c {r2} set 2\n22\n".encode()
        got = b""
        deadline = time.monotonic() + 15
        while len(got) < len(expected) and time.monotonic() < deadline:
            got += os.read(proc.stdout.fileno(), 4096)  # type: ignore[union-attr]
        assert got == expected
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_self_prints_the_node_id(node: Any) -> None:
    """self prints the answering node's id."""
    status, body = node.request("GET", "/v1/self")
    assert ok(doozer(node, "self")) == body["id"] + "\n"


@pytest.mark.slow
def test_nop_succeeds_silently(node: Any) -> None:
    """nop runs a consensus round and prints nothing."""
    assert ok(doozer(node, "nop")) == ""


@pytest.mark.slow
def test_txn_from_a_file_and_stdin_prints_the_rev_and_a_failed_compare_exits_1(
        node: Any, tmp_path: Any) -> None:
    """`doozer txn FILE.json` and `doozer txn -` (SPEC §10): the rev on stdout;
    a failed compare exits 1, another failure 2, each naming the entry."""
    elect = json.dumps({"compare": [{"path": "/txn/leader", "rev": 0}],
                        "ops": [{"op": "set", "path": "/txn/leader", "value": "n1"}]})
    path = tmp_path / "elect.json"
    path.write_text(elect)
    rev = int(ok(doozer(node, "txn", str(path))))
    assert ok(doozer(node, "get", "/txn/leader")) == "n1"
    assert ok(doozer(node, "stat", "/txn/leader")) == f"{rev} 2\n"
    line = failed(doozer(node, "txn", "-", stdin=elect.encode()), 1)
    assert "REV_MISMATCH" in line and "compare 0" in line
    gone = json.dumps({"ops": [{"op": "del", "path": "/txn/nope"}]}).encode()
    line = failed(doozer(node, "txn", "-", stdin=gone), 2)
    assert "NOENT" in line and "op 0" in line


@pytest.mark.slow
def test_help_lists_every_command_and_documents_each(node: Any) -> None:
    """help lists every command; help CMD documents it; an unknown one exits 2."""
    listing = ok(doozer(node, "help"))
    for name in COMMANDS:
        assert f"  {name}" in listing
        assert ok(doozer(node, "help", name)).startswith("usage: doozer")
    failed(doozer(node, "help", "bogus"), 2)


@pytest.mark.slow
def test_usage_errors_exit_2(node: Any) -> None:
    """No command, an unknown command or option, or missing args: exit 2."""
    failed(doozer(node), 2)
    failed(doozer(node, "frobnicate"), 2)
    failed(doozer(node, "-x", "rev"), 2)
    failed(doozer(node, "get"), 2)
    failed(doozer(node, "-r", "zero", "get", "/x"), 2)


@pytest.mark.slow
def test_get_of_a_directory_or_bad_path_exits_2(node: Any) -> None:
    """Errors from the node are one line and exit 2."""
    ok(doozer(node, "set", "/dir/f", "-1", stdin=b""))
    assert "ISDIR" in failed(doozer(node, "get", "/dir"), 2)
    assert "BAD_PATH" in failed(doozer(node, "get", "/bad path"), 2)


@pytest.mark.slow
def test_doozer_uri_environment_variable_is_used(node: Any) -> None:
    """Without -a, DOOZER_URI says where the node is; http:// URLs work."""
    ok(doozer(node, "set", "/env", "-1", stdin=b"via env"))
    assert ok(doozer(node, "get", "/env", env={"DOOZER_URI": f"http://{node.addr}"})) == "via env"


@pytest.mark.slow
def test_a_dead_first_ca_fails_over_to_the_next(node: Any) -> None:
    """With the first ca refusing connections, the command uses the second."""
    from procutil import free_port

    uri = f"doozer:?ca=127.0.0.1:{free_port()}&ca={node.addr}"
    assert re.fullmatch(r"\d+\n", ok(doozer(node, "rev", uri=uri)))


@pytest.mark.slow
def test_no_reachable_node_exits_2_with_one_line(node: Any) -> None:
    """When no address answers, one line on stderr and exit 2."""
    from procutil import free_port

    line = failed(doozer(node, "rev", uri=f"doozer:?ca=127.0.0.1:{free_port()}"), 2)
    assert "UNAVAILABLE" in line
    failed(doozer(node, "rev", uri="ftp://nope"), 2)


@pytest.mark.slow
def test_the_secret_in_the_uri_is_presented(tmp_path: Any) -> None:
    """Against a node with a secret, sk= in the URI works and its absence exits 2."""
    from procutil import NodeProcess

    proc = NodeProcess(str(tmp_path), env={"DOOZER_RWSECRET": "hunter2"})
    try:
        proc.start(wait=False)
        deadline = time.monotonic() + 30
        while True:
            try:
                if proc.request("GET", "/v1/rev", headers={"Authorization": "Bearer hunter2"})[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "UNAUTHORIZED" in failed(doozer(proc, "rev"), 2)
        assert re.fullmatch(r"\d+\n", ok(doozer(proc, "rev", uri=f"doozer:?ca={proc.addr}&sk=hunter2")))
    finally:
        proc.stop()
