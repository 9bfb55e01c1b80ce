"""What the server keeps between requests: feature stacks shared by sessions, and the sessions by id."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict


class FeatureCache:
    """Feature stacks by (image, parameters, backend), least recently used dropped past a byte budget.

    Parameters
    ----------
    max_bytes : int
        Budget for all stacks together; one stack larger than it is still kept
        (alone), since the session that asked for it needs it.
    """

    def __init__(self, max_bytes: int = 4 << 30):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, compute):
        """The stack for ``key``, from ``compute()`` when not cached; and whether it was cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], True
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > 1 and sum(v.nbytes for v in self._items.values()) > self.max_bytes:
                self._items.popitem(last=False)
        return value, False

    def __len__(self):
        return len(self._items)


class SessionStore:
    """Sessions by id, bounded by count, memory and idle time; a dropped session's tab is told, and its strokes kept.

    When a session is made, sessions idle for over ``max_idle_s`` are dropped
    first, then the least recently used while more than ``max_sessions`` are
    kept or their images, overlays and training rows take over ``max_bytes`` (an
    image shared by sessions counted once); the one being made is never dropped. A dropped
    session leaves a note (a few kilobytes: why, its classes and strokes as
    JSON, see :func:`work_record`); the next request of its tab gets a new
    session whose ``message`` says what happened and whose ``recovered`` holds
    that record, for the tab to download.

    Parameters
    ----------
    factory : callable
        ``factory() -> Session`` for an id not (or no longer) stored.
    max_sessions : int
    max_bytes : int
    max_idle_s : float
    clock : callable
        Seconds, increasing (``time.monotonic``).
    """

    MAX_NOTES = 1024

    def __init__(self, factory, max_sessions: int = 32, max_bytes: int = 2 << 30, max_idle_s: float = 4 * 3600,
                 clock=time.monotonic):
        self.factory = factory
        self.max_sessions = int(max_sessions)
        self.max_bytes = int(max_bytes)
        self.max_idle_s = float(max_idle_s)
        self.clock = clock
        self._sessions: OrderedDict = OrderedDict()  # id -> [session, last use]
        self._notes: OrderedDict = OrderedDict()  # id of a dropped session -> (why, record)
        self._lock = threading.Lock()

    def get(self, session_id: str):
        """The session of ``session_id``, created (with the starting image) when missing."""
        now = self.clock()
        with self._lock:
            if session_id in self._sessions:
                entry = self._sessions[session_id]
                entry[1] = now
                self._sessions.move_to_end(session_id)
                return entry[0]
        session = self.factory()
        with self._lock:
            if session_id in self._sessions:  # another request of the tab made it meanwhile
                return self._sessions[session_id][0]
            note = self._notes.pop(session_id, None)
            if note is not None:
                why, record = note
                session.recovered = record
                session.message = (f"This tab's previous session was closed by the server ({why}): its image and "
                                   f"model are gone. Its {len(json.loads(record)['strokes'])} strokes were kept: "
                                   "'strokes (JSON)' downloads them.")
            self._sessions[session_id] = [session, now]
            self._evict(now, keep=session_id)
        return session

    def _evict(self, now: float, keep: str) -> None:
        for sid, (session, used) in list(self._sessions.items()):
            if sid != keep and now - used > self.max_idle_s:
                self._drop(sid, f"idle for over {self.max_idle_s / 3600:g} h")
        while len(self._sessions) > 1 and (len(self._sessions) > self.max_sessions or self.nbytes() > self.max_bytes):
            oldest = next(sid for sid in self._sessions if sid != keep)
            self._drop(oldest, f"the server keeps at most {self.max_sessions} sessions and "
                               f"{self.max_bytes / 2**30:g} GiB of images; this one was the least recently used")

    def _drop(self, session_id: str, why: str) -> None:
        session, _ = self._sessions.pop(session_id)
        if session.strokes:
            self._notes[session_id] = (why, work_record(session))
            while len(self._notes) > self.MAX_NOTES:
                self._notes.popitem(last=False)

    def nbytes(self) -> int:
        """Bytes of the stored sessions' images, predictions of displayed planes and kept training rows, each
        image counted once."""
        images = {id(s.image): s.image.nbytes for s, _ in self._sessions.values()}
        overlays = sum(s.views_nbytes + s.training_nbytes for s, _ in self._sessions.values())
        return sum(images.values()) + overlays

    def __contains__(self, session_id):
        return session_id in self._sessions

    def __len__(self):
        return len(self._sessions)


def work_record(session) -> str:
    """A session's scribbling work as JSON: image name, classes and strokes (frame, plane, label, SVG path, width).

    A session that recovered a dropped one's record holds it under ``"recovered"``.
    """
    from dataclasses import asdict

    record = {
        "image": session.name,
        "classes": [asdict(c) for c in session.classes],
        "strokes": [{"frame": s.frame, "plane": s.plane, "label": s.label, "path": s.path, "width": s.width}
                    for s in session.strokes],
    }
    if session.recovered:
        record["recovered"] = json.loads(session.recovered)
    return json.dumps(record)
