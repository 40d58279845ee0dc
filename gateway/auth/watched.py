"""Key files re-read when they change, without a stat per request."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class WatchedFile:
    """A file re-read when it changes, checked at most every ``every_s`` seconds."""

    path: Path
    every_s: float
    _stamp: tuple[int, int, int] | None = None
    _checked: float = 0.0

    def changed(self, now: float) -> bool:
        if now - self._checked < self.every_s and self._stamp is not None:
            return False
        self._checked = now
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True
