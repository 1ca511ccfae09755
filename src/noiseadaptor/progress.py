"""How long work says where it is: a bar on a terminal (`True`), a line to stderr now and then where output
goes to a file or a log (`"lines"`), or nothing (`False`). Every `progress=` argument takes these three."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Literal

from tqdm.auto import tqdm

Progress = bool | Literal["lines"]


def progress_over(items: Iterable, desc: str, progress: Progress, every: float = 30.0) -> Iterable:
    """`items`, with a bar (progress True), a line every `every` seconds (progress "lines") or silently."""
    if progress == "lines":
        return _Lines(items, desc, every)
    return tqdm(items, desc=desc, leave=False) if progress else items


class _Lines:
    def __init__(self, items: Iterable, desc: str, every: float):
        self.items, self.desc, self.every = items, desc, every

    def __iter__(self) -> Iterator:
        total = len(self.items) if hasattr(self.items, "__len__") else None
        begin = last = time.monotonic()
        for i, item in enumerate(self.items):
            yield item
            now = time.monotonic()
            if now - last >= self.every:
                last, done = now, i + 1
                left = f", about {duration((now - begin) / done * (total - done))} left" if total else ""
                of = f"/{total}" if total else ""
                print(f"[{self.desc}] {done}{of} ({duration(now - begin)}{left})", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """'42 s', '7.5 min', '2.1 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
