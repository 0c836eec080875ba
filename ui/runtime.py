"""Every workaround of Streamlit internals the studio needs, in one place, each version-guarded.

app.py calls `install()` at the start of every run; each page calls
`enter_page()` first; a training job asks `session_connected()`. They touch
private Streamlit names, checked to exist
(`tests/test_app.py` fails when one disappears) and applied only within the
tested Streamlit range; outside it they do nothing and the studio still runs,
just without the fix.

1. `_clean_problem_modules` (streamlit.runtime.scriptrunner.script_runner): after every
   script run Streamlit calls `keras.backend.clear_session()` (meant for old
   graph-mode Keras) and a full garbage collection. With a fragment rerunning
   every second during training, each call reset Keras' global state and
   cleared TensorFlow's kernel cache; a run's graph tracing then crawled and
   its time budget could not be kept. `install()` replaces it with what is
   still wanted: closing matplotlib figures.
2. `PagesManager.uses_pages_directory` (streamlit.runtime.pages_manager): a
   `pages/` folder next to app.py (the product's layout names it) starts a
   server, and every AppTest run, in Streamlit's legacy multipage mode, which
   runs a page file on its own, without app.py, when it is the first request
   (a deep link) or AppTest's page. `enter_page()` leaves that mode, as
   `st.navigation` would, and runs app.py in its place, which runs this same
   page inside its frame; the page file's own run then stops. (A rerun would
   do the same but lose the click that caused this run.)
3. `Runtime.is_active_session` and `get_script_run_ctx`: whether a browser
   session is still connected, asked from a training thread (`session_connected`),
   so a run whose tab has closed stops. Outside the tested range, or outside a
   server, the answer is always yes.
4. The same two, for `admitted()`: which sessions are still connected, so a
   closed tab frees its place under `CNNVIZ_MAX_SESSIONS`.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parent.parent / "app.py"

#: Streamlit versions these workarounds were tested with (pyproject.toml allows the same).
TESTED_VERSIONS = ((1, 50), (2, 0))


def _version() -> tuple[int, int]:
    major, minor = (int(part) for part in st.__version__.split(".")[:2])
    return major, minor


def supported() -> bool:
    """Whether this Streamlit is one the workarounds were tested with."""
    low, high = TESTED_VERSIONS
    return low <= _version() < high


def _close_matplotlib_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


_close_matplotlib_figures.cnnviz = True


def install() -> None:
    """Keeps Keras' state between script runs (workaround 1); safe to call on every run."""
    if not supported():
        return
    from streamlit.runtime.scriptrunner import script_runner

    if getattr(script_runner._clean_problem_modules, "cnnviz", False):
        return
    script_runner._clean_problem_modules = _close_matplotlib_figures


def enter_page() -> None:
    """Makes sure this page runs inside app.py (workaround 2); the first call of every page."""
    if not supported():
        return
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        # Running on its own in legacy mode: leave it, and let app.py run this page inside its frame.
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()


def session_connected() -> Callable[[], bool]:
    """A check, callable from any thread, that the browser session running this script is still connected.

    Always true outside a Streamlit server (AppTest, a plain script) and outside the tested versions.
    """
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx(suppress_warning=True)
    if context is None or not runtime.exists() or not supported():
        return lambda: True
    instance, session_id = runtime.get_instance(), context.session_id
    return lambda: instance.is_active_session(session_id)


def admitted() -> bool:
    """Whether this browser session is served now (see ui/admission.py); always outside a server."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from cnnviz import limits
    from ui.admission import ADMISSION

    context = get_script_run_ctx(suppress_warning=True)
    if context is None or not runtime.exists() or not supported():
        return True
    instance = runtime.get_instance()
    return ADMISSION.admit(context.session_id, limits.max_sessions(), instance.is_active_session)
