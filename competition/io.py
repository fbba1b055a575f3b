"""Atomic writes: an artifact is either absent or complete, never half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import tomli_w

from .errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: Path, *, directory: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; on success rename it over ``target``. ``keep_suffix``
    ends the temporary file's name with ``target``'s suffix, for writers that check it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp" + (target.suffix if keep_suffix else ""), dir=target.parent
        )
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield tmp
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def write_csv(frame: pd.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)


def write_text(text: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_toml(data: dict, target: Path, header: str = "") -> None:
    write_text(header + tomli_w.dumps(data), target)


def write_json(data: dict, target: Path) -> None:
    write_text(json.dumps(data, indent=2), target)


def create_exclusive(text: str, target: Path) -> bool:
    """Write ``text`` to ``target`` whole unless ``target`` exists; False if it does. Of processes
    creating the same file at once, exactly one gets True: the text is written to a temporary file
    and hard-linked to ``target``, which never replaces a file (also on NFS)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.chmod(name, 0o666 & ~_UMASK)
        os.link(name, target)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(name)


def read_json(path: Path) -> dict:
    """A JSON object written by fkp, or one line naming the file and why it cannot be read."""
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(path, "missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise InputError(path, f"not a JSON object but {type(record).__name__}")
    return record


def claim_record(path: Path, record: dict, remedy: str) -> bool:
    """Record what new work is made with (JSON at ``path``), or accept continuing work recorded with
    the same; refuse, naming what differs, work recorded with another. True if newly recorded; of two
    processes recording at once, one records and the other compares."""
    if create_exclusive(json.dumps(record, indent=2), path):
        return True
    existing = read_json(path)
    differs = [key for key, value in record.items() if existing.get(key) != value]
    if differs:
        raise InputError(path, f"made with other {', '.join(differs)}: {remedy}")
    return False
