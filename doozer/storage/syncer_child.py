"""The syncer's child process: writes batches where it is told, and says when.

Run as a script (``python -I -S syncer_child.py FD``), importing nothing
but the standard library, so it starts in milliseconds. ``FD`` is its end
of a ``SOCK_SEQPACKET`` socket pair (:mod:`doozer.storage.syncer`).

Each request is one packet: the file's descriptor (passed with
``SCM_RIGHTS``), then :data:`REQUEST` (the offset) and the bytes to write
there. The file is opened ``O_DSYNC`` by the node: the write returns once
the bytes are durable. Each reply is one packet, :data:`REPLY`: 0 or the
write's ``errno``, and the seconds the write took. The child ends when the
node closes its end (or dies: the socket then reads as closed too).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import sys
import time

#: a request's header: the offset to write at
REQUEST = struct.Struct(">Q")
#: a reply: 0 or the write's errno, and the seconds it took
REPLY = struct.Struct(">id")
#: the largest request (header and bytes): larger batches are not sent
MAX_REQUEST = 1 << 16


def serve(sock: socket.socket) -> None:
    """Answer requests until the socket is closed."""
    while True:
        try:
            data, fds, flags, _ = socket.recv_fds(sock, MAX_REQUEST, 4)
        except OSError:
            return
        for extra in fds[1:]:  # never sent; never leaked either
            os.close(extra)
        if not data and not fds:
            return  # the node closed its end
        if not fds:
            sock.send(REPLY.pack(errno.EBADF, 0.0))
            continue
        fd = fds[0]
        start = time.perf_counter()
        try:
            if flags & socket.MSG_TRUNC or len(data) < REQUEST.size:
                code = errno.EMSGSIZE
            else:
                offset, = REQUEST.unpack_from(data)
                view = memoryview(data)[REQUEST.size:]
                while view:  # a file may take fewer bytes than it was given
                    written = os.pwrite(fd, view, offset)
                    view = view[written:]
                    offset += written
                code = 0
        except OSError as e:
            code = e.errno or errno.EIO
        finally:
            os.close(fd)
        sock.send(REPLY.pack(code, time.perf_counter() - start))


def main() -> None:
    """Serve the socket named on the command line. Interrupts and requests
    to terminate are the node's to act on, not the child's: a Ctrl-C in a
    terminal, or a service manager stopping the node's whole group, reaches
    both, and the node still has its last batch to write. The child ends
    when the node's end of the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
