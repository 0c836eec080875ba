"""How many visitors the studio serves at once; past the limit, a visitor is asked to come back.

One server process holds one `Admission`. A session is admitted on its first script run while fewer than
`CNNVIZ_MAX_SESSIONS` are; it stays admitted until its browser tab disconnects. A session turned away
costs one short script run (no model, no TensorFlow) and is admitted on a later run once there is room.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Admission:
    """The set of admitted session ids, at most `limit` of them alive at once (thread-safe)."""

    def __init__(self) -> None:
        self._admitted: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, session_id: str, limit: int, alive: Callable[[str], bool]) -> bool:
        """Whether `session_id` is served: already admitted, or admitted now because there is room."""
        with self._lock:
            if session_id in self._admitted:
                return True
            self._admitted = {other for other in self._admitted if alive(other)}
            if len(self._admitted) >= limit:
                return False
            self._admitted.add(session_id)
            return True


ADMISSION = Admission()


def busy_page() -> None:
    """What a visitor past the limit sees: no model is loaded for them, so it shows at once."""
    import streamlit as st

    from cnnviz import limits

    st.title("cnnviz studio")
    st.warning(
        f"Busy: this demo is serving as many visitors as it can at once ({limits.max_sessions()}). "
        "Try again in a minute."
    )
    st.button("Try again", type="primary", key="busy.retry")
