"""Files written so that a killed run never leaves half of one: atomic writes, their leftovers, valid JSON,
and one writer at a time."""

from __future__ import annotations

import errno
import glob
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_json(obj, path: str | Path) -> None:
    """Valid JSON always: a non-finite number (NaN, infinity) is written as null."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False))


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_path` write of `path` left beside it (call at the start
    of a run that owns `path`); returns what was removed."""
    path = Path(path)
    pattern = f".{glob.escape(path.name)}.*"  # a method's settings in the name ('na[p=4]') are not a glob
    stale = [p for p in path.parent.glob(pattern) if p.is_file()] if path.parent.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable(path: str | Path, what: str = "--out") -> None:
    """Refuse, before any work, a path that cannot be written: a folder without write permission or on a
    read-only file system, or a name longer than the file system takes (with room for `atomic_path`'s
    temporary name). Nothing is left: the nearest existing folder is probed with a temporary file, removed at
    once. One-line ValueError naming `what`."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if _exists(p))
    for part in path.relative_to(existing).parts if existing != path else (path.name,):
        limit = os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
        if len(os.fsencode(part)) + 16 > limit:  # ".name." + the temporary's random suffix
            raise ValueError(f"{what} {path}: the name {part[:24]}... is longer than this file system takes "
                             f"({limit} bytes, less 16 for a temporary name); choose a shorter one")  # fmt: skip
    if not existing.is_dir():
        return  # a file in the way: the caller says so in its own words
    try:  # a temporary file in the nearest existing folder, removed at once: the file system's own answer
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot write into {existing} ({err.strerror}); choose another") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long, say: not there (check_writable says why)
        return False


class atomic_path:
    """Write to a temporary file beside `path`, then rename: a killed run never leaves half a file (and
    `remove_stale_temporaries` clears what a kill during the write left)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a plain open() would not
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


class InUse(ValueError):
    """Another process holds the file (a second run on the same output): raised before any work."""


@contextmanager
def exclusive(path: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold `path`'s lock (the file `path`.lock beside it) for the block, so that two processes never
    write `path` at once (nor does the second clear the first's temporaries at its start). Without `wait`
    a held lock raises InUse naming the holder's pid; with it, the block waits its turn. An advisory POSIX
    record lock (`lockf`): released by the kernel when the holder dies (a SIGKILL leaves no stale lock) and,
    unlike `flock`, not inherited by forked children, so DataLoader workers orphaned by a killed run do not
    keep it from the run that resumes; the .lock file stays. Per process: a second lock of the same file in
    the same process does not wait. Where `fcntl` is missing (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the machines this is tested on
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{path.name}.lock", "a+") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):  # anything but "held by another process"
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise InUse(
                f"{path} is being written by another process (pid {holder}); wait for it to finish, "
                "or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield  # closing the file releases the lock
