"""What the server keeps between requests: feature stacks shared by sessions, and the sessions by id."""

from __future__ import annotations

import threading
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
    """Sessions by id, least recently used dropped past ``max_sessions``.

    Parameters
    ----------
    factory : callable
        ``factory() -> Session`` for an id not (or no longer) stored.
    max_sessions : int
    """

    def __init__(self, factory, max_sessions: int = 16):
        self.factory = factory
        self.max_sessions = int(max_sessions)
        self._sessions: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session:
        """The session of ``session_id``, created (with the starting image) when missing."""
        with self._lock:
            if session_id in self._sessions:
                self._sessions.move_to_end(session_id)
                return self._sessions[session_id]
        session = self.factory()
        with self._lock:
            session = self._sessions.setdefault(session_id, session)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def __contains__(self, session_id):
        return session_id in self._sessions

    def __len__(self):
        return len(self._sessions)
