"""Tests for doozer.storage.syncer_child: the child's loop, run in a thread
here, over a socket pair (its only input is the node's own socket, but a
request it cannot serve still gets an answer, never a hang)."""

from __future__ import annotations

import array
import errno
import os
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from doozer.storage.syncer_child import MAX_REQUEST, REPLY, REQUEST, serve


@pytest.fixture
def child() -> Iterator[socket.socket]:
    """The node's end of a socket pair whose other end a child loop serves."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    thread = threading.Thread(target=serve, args=(theirs,), daemon=True)
    thread.start()
    yield ours
    ours.close()  # the loop ends when the node's end is closed
    thread.join(5)
    assert not thread.is_alive()
    theirs.close()


def request(sock: socket.socket, data: bytes, fd: int | None) -> tuple[int, float]:
    fds = [] if fd is None else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
    sock.sendmsg([data], fds)
    code, seconds = REPLY.unpack(sock.recv(64))
    return code, seconds


def test_writes_at_the_offset_and_closes_the_passed_descriptor(child: socket.socket,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_WRONLY | os.O_DSYNC)
    try:
        before = len(os.listdir("/proc/self/fd"))
        assert request(child, REQUEST.pack(4) + b"abc", fd)[0] == 0
        assert request(child, REQUEST.pack(12) + b"yz", fd)[0] == 0  # past the end: grows
        assert len(os.listdir("/proc/self/fd")) == before  # its copies are closed
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123abc789\0\0yz"


def test_a_failed_write_answers_its_errno_and_the_loop_goes_on(child: socket.socket,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    read_only = os.open(path, os.O_RDONLY)
    writable = os.open(path, os.O_WRONLY)
    try:
        assert request(child, REQUEST.pack(0) + b"no", read_only)[0] == errno.EBADF
        assert request(child, REQUEST.pack(0) + b"ok", writable)[0] == 0
    finally:
        os.close(read_only)
        os.close(writable)
    assert path.read_bytes() == b"ok"


def test_requests_it_cannot_serve_are_refused_not_guessed(child: socket.socket,
                                                          tmp_path: Path) -> None:
    """No descriptor, a header cut short, a request larger than its buffer:
    each gets an error answer and nothing is written."""
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_WRONLY)
    child.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MAX_REQUEST)
    try:
        assert request(child, REQUEST.pack(0) + b"data", None)[0] == errno.EBADF
        assert request(child, b"\0\0", fd)[0] == errno.EMSGSIZE
        assert request(child, REQUEST.pack(0) + b"x" * MAX_REQUEST, fd)[0] == errno.EMSGSIZE
        assert request(child, REQUEST.pack(0) + b"fine", fd)[0] == 0
    finally:
        os.close(fd)
    assert path.read_bytes() == b"fine"
