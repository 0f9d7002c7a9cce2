"""The ``doozer`` command (SPEC §4): the entry point, the command line, exit
statuses; the commands themselves are :mod:`doozer.client.commands`.

``doozer [-a URI] [-r REV] [-t DURATION] [-l ID] COMMAND [ARGS]``; ``doozer help``
lists the commands and ``doozer help COMMAND`` documents one. Exit status:
0 success, 1 rev mismatch, 2 any other error, always with one line on
stderr and never a traceback.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, BinaryIO, NoReturn, Optional, Sequence

from doozer.client.commands import (
    COMMANDS,
    CommandError,
    Context,
    Options,
    UsageError,
    parse_int,
)
from doozer.client.errors import RevMismatch
from doozer.client.uri import DEFAULT_URI, BadURI
from doozer.errors import DoozerError

__all__ = ["COMMANDS", "Options", "UsageError", "main", "parse_args", "parse_duration", "run"]

OK, MISMATCH, FAILED = 0, 1, 2


# ----------------------------------------------------------------------
# parsing


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``30``, ``30s``, ``1.5s``, ``1m30s``, ``250ms``, ``1h`` (Go style).

    :raises UsageError: for anything else, or a duration that is not > 0.
    """
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", text):
        seconds = float(text)
    else:
        pos, seconds = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise UsageError(f"-t: {text!r} is not a duration (examples: 30, 30s, 1m30s)")
    if seconds <= 0:
        raise UsageError(f"-t: {text!r} must be more than zero")
    return seconds


def parse_args(argv: Sequence[str]) -> Options:
    """Parse ``[options] COMMAND [ARGS]``; options may also follow the command.

    Negative numbers (``set /a -1``) are arguments, not options.
    :raises UsageError: for unknown options, missing values or arguments.
    """
    options = Options()
    positional: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if item == "--":
            positional.extend(items[i:])
            break
        if item in ("-h", "--help"):
            positional = ["help"] + positional[:1]
            break
        flag, value = item[:2], item[2:]
        if item.startswith("--") and "=" in item:
            flag, value = {"--addr": "-a", "--rev": "-r", "--timeout": "-t", "--lease": "-l"}.get(
                item.split("=", 1)[0], item
            ), item.split("=", 1)[1]
        if flag in ("-a", "-r", "-t", "-l") and not re.fullmatch(r"-\d+", item):
            if value.startswith("="):
                value = value[1:]
            if not value:
                if i >= len(items):
                    raise UsageError(f"option {flag} needs a value")
                value = items[i]
                i += 1
            if flag == "-a":
                options.uri = value
            elif flag == "-r":
                options.rev = parse_int(value, "-r REV", minimum=1)
            elif flag == "-l":
                options.lease = value
            else:
                options.timeout = parse_duration(value)
            continue
        if item.startswith("--") and len(item) > 2:
            # a command's own option (checked against the command below)
            name, eq, value = item[2:].partition("=")
            if not eq:
                if i >= len(items):
                    raise UsageError(f"option --{name} needs a value")
                value = items[i]
                i += 1
            options.flags[name] = value
            continue
        if item.startswith("-") and len(item) > 1 and not re.fullmatch(r"-\d+", item):
            raise UsageError(f"unknown option {item}; see 'doozer help'")
        positional.append(item)
    if not positional:
        raise UsageError("no command given; see 'doozer help'")
    options.command, options.args = positional[0], positional[1:]
    cmd = COMMANDS.get(options.command)
    if cmd is None:
        raise UsageError(f"unknown command {options.command!r}; see 'doozer help'")
    for name in options.flags:
        if name not in cmd.flags:
            raise UsageError(f"unknown option --{name}; see 'doozer help'")
    optional = sum(1 for a in cmd.args if a.startswith("["))
    if not len(cmd.args) - optional <= len(options.args) <= len(cmd.args):
        wanted = " ".join(cmd.args)
        raise UsageError(f"usage: doozer {cmd.name} {wanted}".rstrip())
    return options


# ----------------------------------------------------------------------
# errors


def describe(error: BaseException) -> str:
    """One human line for an error."""
    if isinstance(error, RevMismatch) and f"rev {error.rev}" not in error.detail:
        text = f"REV_MISMATCH: {error.detail} (current rev {error.rev})"
    elif isinstance(error, DoozerError):
        text = f"{error.code}: {error.detail}"
    else:
        text = str(error) or type(error).__name__
    if isinstance(error, DoozerError) and isinstance(error.extra.get("index"), int):
        # a transaction's failure: which compare or op (SPEC §10)
        where = "compare" if error.extra.get("in") == "compare" else "op"
        text += f" (at {where} {error.extra['index']} of the transaction)"
    return " ".join(text.split())


def exit_status(error: BaseException) -> int:
    """1 for a rev mismatch, 2 for anything else."""
    return MISMATCH if isinstance(error, RevMismatch) else FAILED


# ----------------------------------------------------------------------
# running


async def run(options: Options, client: Any, out: BinaryIO, err: BinaryIO,
              stdin: bytes = b"", reactor: Any = None) -> int:
    """Run one parsed command with ``client`` (None for an offline command);
    returns the exit status.

    Every error becomes one line on ``err``.
    """
    ctx = Context(client, options, out, stdin, reactor)
    try:
        await COMMANDS[options.command].run(ctx, *options.args)
    except (DoozerError, UsageError, CommandError, BadURI) as error:
        err.write(f"doozer: {describe(error)}\n".encode("utf-8"))
        err.flush()
        return exit_status(error)
    except BrokenPipeError:
        return OK
    except Exception as error:  # a bug: still one line, never a traceback
        err.write(f"doozer: internal error: {describe(error)}\n".encode("utf-8"))
        err.flush()
        return FAILED
    return OK


async def _main(reactor: Any, options: Options, stdin: bytes) -> None:
    client = None
    if not COMMANDS[options.command].offline:
        from doozer.client import connect

        uri = options.uri or os.environ.get("DOOZER_URI") or DEFAULT_URI
        try:
            client = connect(uri, clock=reactor)
        except BadURI as error:
            _fail(str(error), FAILED)
    try:
        status = await run(options, client, sys.stdout.buffer, sys.stderr.buffer, stdin, reactor)
    finally:
        if client is not None:
            await client.close()
    if status:
        raise SystemExit(status)


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"doozer: {' '.join(message.split())}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """The console entry point: parse, run under ``react``, exit 0/1/2.

    Once the reactor runs, SIGINT stops it and the command exits 0 (how
    ``watch`` ends); a Ctrl-C before that exits 130, quietly too.
    """
    try:
        _run_main(argv)
    except KeyboardInterrupt:
        os._exit(130)
    raise SystemExit(OK)


def _run_main(argv: Optional[Sequence[str]]) -> None:
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        _fail(str(error), FAILED)
    reads = COMMANDS[options.command].reads_stdin
    wanted = reads(options.args) if callable(reads) else reads
    stdin = sys.stdin.buffer.read() if wanted else b""
    from twisted.internet.task import react

    try:
        react(_main, (options, stdin))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else FAILED
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(code) from None


if __name__ == "__main__":
    main()
