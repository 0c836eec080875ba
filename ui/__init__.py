"""Streamlit helpers shared by the pages: session keys, cached wrappers around
cnnviz, and small widget helpers. Model logic stays in cnnviz."""


def _keep_keras_state_between_runs() -> None:
    """Stops Streamlit from calling `keras.backend.clear_session()` after every script run.

    Streamlit does it (`script_runner._clean_problem_modules`) for old
    graph-mode Keras. Here it is harmful: the Train and Improve pages rerun a
    fragment every second while a training thread runs, and each
    clear_session() resets Keras' global state, clears TensorFlow's kernel
    cache and runs a full garbage collection. A run's graph tracing then
    crawled (minutes, not seconds) and the time budget could not be kept.
    Matplotlib figures are still closed, as Streamlit intends.
    """
    try:
        from streamlit.runtime.scriptrunner import script_runner
    except ImportError:  # a Streamlit without that module does not do it either
        return
    if getattr(script_runner._clean_problem_modules, "_cnnviz", False):
        return

    def close_matplotlib_figures() -> None:
        import sys

        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")

    close_matplotlib_figures._cnnviz = True
    script_runner._clean_problem_modules = close_matplotlib_figures


_keep_keras_state_between_runs()
