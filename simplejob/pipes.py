"""File-descriptor plumbing shared by the supervisor, the worker pool and the workers: reading
newline-delimited messages, writing all of a buffer, waking a select() loop on a signal, and
opening a file that must be a regular one."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Callable
from typing import Any

from . import jsonline

READ_SIZE = 1 << 16
MAX_SELECT = 3600.0  # seconds: a longer select() timeout overflows epoll's milliseconds; loops wake and look again


def select_timeout(seconds: float | None) -> float | None:
    """A timeout for select(): at least 0, at most MAX_SELECT (None: wait for input only)."""
    return None if seconds is None else min(MAX_SELECT, max(0.0, seconds))


class LineReader:
    """Reads newline-delimited messages from a descriptor, keeping a partial last line for later."""

    def __init__(self, fd: int, buffered: bytes = b"") -> None:
        self.fd = fd
        self.buffer = buffered

    def read(self) -> list[bytes] | None:
        """The complete lines that one read() brought (maybe none); None at end of file."""
        try:
            chunk = os.read(self.fd, READ_SIZE)
        except BlockingIOError:  # a non-blocking descriptor with nothing to read after all
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines

    def read_line(self) -> bytes | None:
        """Block until one whole line is there (the rest stays buffered); None at end of file.
        The chunks are joined once: a batch of 100,000 jobs is one line of about 20 MB."""
        chunks = [self.buffer]
        while b"\n" not in chunks[-1]:
            chunk = os.read(self.fd, READ_SIZE)
            if not chunk:
                self.buffer = b"".join(chunks)
                return None
            chunks.append(chunk)
        line, self.buffer = b"".join(chunks).split(b"\n", 1)
        return line

    def messages(self) -> list[dict[str, Any]] | None:
        """read(), each line decoded as a JSON object."""
        lines = self.read()
        return None if lines is None else [jsonline.decode(line) for line in lines]


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a pipe or a file may take less per call)."""
    while data:
        data = data[os.write(fd, data) :]


def encode_lines(messages: list[Any]) -> bytes:
    """Messages as newline-terminated JSON lines, ready for one write."""
    return ("\n".join(map(jsonline.encode, messages)) + "\n").encode()


def signal_wakeup(signals: tuple[signal.Signals, ...], handler: Callable[[int, Any], None]) -> int:
    """Install handler for signals and make any signal wake a select() loop.

    Returns the read end of a non-blocking pipe that the interpreter writes to when a signal
    arrives (signal.set_wakeup_fd): register it with the selector and drain() it when readable.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for signum in signals:
        signal.signal(signum, handler)
    return wake_r


def drain(fd: int) -> None:
    """Empty a non-blocking wake-up pipe (a read that brings less than it asked for emptied it:
    no second read to learn that, once per job in a worker)."""
    try:
        while len(os.read(fd, 512)) == 512:
            pass
    except BlockingIOError:
        pass


class NotRegularFile(OSError):
    """open_regular() found a FIFO, a directory, a device or a socket where a file should be."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path!r} is {kind}, not a regular file")
        self.strerror = "not a regular file"
        self.filename = path
        self.kind = kind


def open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """os.open(path, flags, mode), refusing anything but a regular file (NotRegularFile): opened
    non-blocking, so that a FIFO never hangs the caller, then checked, then made blocking again."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0), mode)
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        raise NotRegularFile(path, _kind_of(kind))
    if hasattr(os, "O_NONBLOCK"):
        os.set_blocking(fd, True)
    return fd


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"
