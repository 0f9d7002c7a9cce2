"""doozerd's framing on one connection, within the node's limits (SPEC §7, §12).

A frame is a 4-byte big-endian length and that many bytes.
:class:`FrameProtocol` cuts the bytes a client sends into frames and hands
each to :meth:`~FrameProtocol.frame_received`; a frame longer than
``max_frame`` closes the connection. What a frame means is the subclass's
(:class:`doozer.server.doozerd.protocol.NativeProtocol`).

Limits:

- **Unsent output.** The protocol is its transport's producer: the
  transport says when its buffer is full and when it has sent everything.
  Answers are written as they come, but once the unsent output may pass
  ``max_output`` (:class:`~doozer.server.limits.OutputGauge`), no further frame is
  taken, even from bytes already read, and the transport is not read,
  until it has sent everything. [A client pipelining GETs of a 32 KB value
  and never reading grew a node to 1 GB.]
- **Deadline.** With a :class:`~doozer.server.limits.Ticket` (handed over by the
  sniffer), a frame must arrive whole within the request timeout of its
  first byte (the first frame: of connecting), else the connection is
  closed. Between frames a connection may stay idle as long as it likes:
  doozerd's clients dial once and keep their connection for the life of the
  process, with no redial, so closing an idle one would break them (and a
  connection holding a WAIT is not idle anyway). Idle connections are
  bounded by ``--max-conns`` like any other. A client that leaves its
  answers unread (so that the node stopped reading it) for
  :data:`~doozer.server.limits.STALL_FACTOR` request timeouts is cut off: it holds
  up to ``--max-output`` of memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from doozer.server.doozerd import proto
from doozer.server.limits import STALL_FACTOR, OutputGauge, Ticket

if TYPE_CHECKING:
    from doozer.server.limits import IConnection


@implementer(IPushProducer)
class FrameProtocol(Protocol):
    """Frames in, frames out, within the limits.

    :param max_frame: the longest frame accepted, in bytes.
    :param max_output: unsent bytes past which the connection is not read.
    :param counters: where ``output_paused`` is counted.
    """

    log = Logger()
    #: Set by the sniffer before the connection is made (None: no deadline).
    ticket: Optional[Ticket] = None
    #: Set by ``makeConnection`` before any other method runs.
    transport: IConnection

    def __init__(self, max_frame: int, max_output: int, counters: dict[str, int]) -> None:
        self.max_frame = max_frame
        self.counters = counters
        self._buffer = b""
        self._closed = False
        #: Not reading: the client has not read enough of our answers.
        self._stopped = False
        self._parsing = False
        self._gauge = OutputGauge(max_output)

    def frame_received(self, payload: bytes) -> None:
        """One whole frame (without its length); the subclass serves it."""
        raise NotImplementedError

    # ------------------------------------------------------------------
    # input

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        ticket = self.ticket
        if ticket is not None:
            ticket.on_expire = self._deadline_passed
            if ticket.deadline is None:
                ticket.expire_in()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._buffer = b""
        if self.ticket is not None:
            self.ticket.release()

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return  # refused: what follows is not read
        self._buffer = self._buffer + data if self._buffer else data
        if not self._stopped and not self._parsing:
            self._parse()

    def _parse(self) -> None:
        """Take the whole frames in the buffer, until there are none or we must stop."""
        self._parsing = True
        try:
            buf = self._buffer
            pos = 0
            end = len(buf)
            taken = False
            while end - pos >= proto.HEADER and not self._closed and not self._stopped:
                size = proto.frame_length(buf[pos : pos + proto.HEADER])
                if size > self.max_frame:
                    return self.refuse(
                        f"a frame of {size} bytes is over the limit {self.max_frame}"
                    )
                stop = pos + proto.HEADER + size
                if stop > end:
                    break
                payload = buf[pos + proto.HEADER : stop]
                pos = stop
                taken = True
                self.frame_received(payload)
            if not self._closed:
                self._buffer = buf[pos:]
                self._track_deadline(taken)
        finally:
            self._parsing = False

    def _track_deadline(self, taken: bool) -> None:
        """A frame begun is due whole within the request timeout; none begun, none due."""
        ticket = self.ticket
        if ticket is None:
            return
        if self._stopped:
            return  # the stall deadline runs (see send_frame)
        if not self._buffer:
            ticket.deadline = None  # idle between frames
        elif taken or ticket.deadline is None:
            ticket.expire_in()  # a new frame began in the bytes just read

    def _deadline_passed(self) -> None:
        assert self.ticket is not None
        if self._closed:
            return
        if self._stopped:
            # Our answers left unread all this time: nothing more will be
            # sent to this client, so there is nothing to wait for.
            self.counters["output_stalled"] += 1
            self._closed = True
            self._buffer = b""
            self.transport.abortConnection()
            return
        if not self._buffer:
            return
        self.ticket.limits.timed_out()
        self.refuse("no whole frame within the request timeout", quiet=True)

    def refuse(self, why: str, quiet: bool = False) -> None:
        """Close the connection: its input is not what it should be."""
        if not quiet:
            self.log.info(
                "closing doozerd-protocol connection {peer}: {why}",
                peer=self.transport.getPeer() if self.transport else None, why=why,
            )
        self._closed = True
        self._buffer = b""
        # A registered producer that the transport paused would hold the
        # connection open until resumed: let go of it first.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    # ------------------------------------------------------------------
    # output: the transport is our consumer

    def send_frame(self, frame: bytes) -> None:
        """Write one frame; stop reading once the client is too far behind."""
        self.transport.write(frame)
        gauge = self._gauge
        if gauge.full:
            gauge.wrote(len(frame))
            if gauge.over and not self._stopped:
                # Outstanding answers still go out; no new request comes in.
                self._stopped = True
                self.counters["output_paused"] += 1
                self.transport.pauseProducing()
                if self.ticket is not None:
                    self.ticket.expire_in(STALL_FACTOR * self.ticket.limits.request_timeout)

    def pauseProducing(self) -> None:
        # The transport's buffer is past its own size: count from here.
        self._gauge.transport_full()

    def resumeProducing(self) -> None:
        # The transport has sent everything: read and take frames again.
        self._gauge.drained()
        if self._stopped and not self._closed:
            self._stopped = False
            self.transport.resumeProducing()
            if not self._parsing:
                self._parse()

    def stopProducing(self) -> None:
        """The connection is going; :meth:`connectionLost` cleans up."""
