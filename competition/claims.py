"""Claims: which process is doing a piece of work (a fold, a search), so that two processes sharing a
folder (terminals, or machines on a shared file system) never both do it.

A claim is a small JSON file ``<name>.<generation>`` naming the holder's host, process id and start
time. It is created whole and exclusively (written to a temporary file, then hard-linked to its
name: a link never replaces an existing file, on local file systems and NFS alike), so of two
processes only one gets it. The claim of the highest generation is the current one. A claim is
stale when its holder is known to be gone: its host is this host and its process is not alive.
A stale claim is taken over by creating the next generation, again exclusively, so of two processes
taking it over only one wins. A claim from another host is never judged stale: this host cannot
see that process, and a slow machine is not a dead one; if that machine is gone, delete its claim
file. The holder removes its claim when the work is done or fails.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .io import create_exclusive


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: a process on a host, since ``started`` (seconds since the epoch)."""

    host: str
    pid: int
    started: float
    token: str  # tells this claim from another by the same process

    @classmethod
    def this_process(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), time.time(), uuid.uuid4().hex)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    @property
    def since(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))

    def is_gone(self) -> bool:
        """True when the holder is known to have ended: a process of this host that is not alive."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False


@dataclass(frozen=True)
class Claim:
    """The current claim on a piece of work: ``ours`` when this process holds it."""

    path: Path
    holder: Holder
    ours: bool


def _generations(base: Path) -> list[tuple[int, Path]]:
    """Every claim file of ``base``, newest generation first."""
    found = [(int(path.suffix[1:]), path) for path in base.parent.glob(f"{base.name}.*") if path.suffix[1:].isdigit()]
    return sorted(found, reverse=True)


def _read(path: Path) -> Holder | None:
    """The holder a claim file names; None when the file is damaged (nobody's: taken over).
    FileNotFoundError when it was released meanwhile."""
    try:
        record = json.loads(path.read_text())
        return Holder(str(record["host"]), int(record["pid"]), float(record["started"]), str(record["token"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextmanager
def claimed(base: Path) -> Iterator[Claim]:
    """Claim the work ``base`` names for the block: yields a ``Claim`` that is ``ours`` (released when the
    block ends, however it ends), or the live holder's claim, untouched."""
    me = Holder.this_process()
    while True:
        generations = _generations(base)
        if generations:
            try:
                current = _read(generations[0][1])
            except FileNotFoundError:  # released or superseded while listing: look again
                continue
            if current is not None and not current.is_gone():
                yield Claim(generations[0][1], current, ours=False)
                return
        path = base.with_name(f"{base.name}.{generations[0][0] + 1 if generations else 0}")
        if create_exclusive(json.dumps(asdict(me)), path):
            break
    for _, older in generations:  # stale claims, superseded
        older.unlink(missing_ok=True)
    try:
        yield Claim(path, me, ours=True)
    finally:
        path.unlink(missing_ok=True)
