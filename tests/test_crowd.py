"""Twelve visitors at once on one `streamlit run app.py`, over Streamlit's own protocol (tests/crowd.py).

The short version of bench/load.py for CI: correctness only (no errors, each visitor sees only its own
models, the busy message past the limit, a freed place is given again). Latency is bench/load.py's.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .crowd import Server, Visitor, image_png

LIMIT = 10
SESSION_OPTION = "Trained in this session"


@pytest.fixture(scope="module")
def server():
    server = Server({"CNNVIZ_MAX_SESSIONS": str(LIMIT), "CNNVIZ_MAX_TIME_BUDGET": "10"})
    yield server
    server.close()


def _predict(visitor: Visitor, seed: int) -> list[str]:
    classes = []
    for number in range(2):
        run = visitor.upload("predict.upload", f"{visitor.name}-{number}.png", image_png(seed * 10 + number))
        assert run.images >= 2, visitor.name  # the image and its heatmap
        classes += [value for label, value in run.metrics if label == "Prediction"]
    return classes


def _browse(visitor: Visitor) -> list[str]:
    shown = []
    for page in ("results", "activations", "results"):
        run = visitor.open(page)
        shown += [label for label, _ in run.metrics] + [str(run.images)]
    return shown


def _train(visitor: Visitor) -> bool:
    visitor.open("train")
    visitor.submit("train.form")
    for _ in range(60):  # the fragment's reruns (every 2 s), until the 10 s run has ended
        if not visitor.auto_reruns:
            return True
        visitor.poll(1.0)
    return False


def test_twelve_visitors_at_once_ten_served_without_errors_each_with_only_its_own_models_two_told_busy(
    server,
):
    visitors = [Visitor(server.url, f"visitor-{index}") for index in range(LIMIT + 2)]
    try:
        visitors[0].open()  # the first visit loads TensorFlow and the default model
        with ThreadPoolExecutor(len(visitors)) as pool:
            first = list(pool.map(lambda visitor: visitor.open(), visitors[:LIMIT]))
            late = list(pool.map(lambda visitor: visitor.open(), visitors[LIMIT:]))
            assert all(("Prediction", "circle") in run.metrics for run in first)
            for run in late:
                assert [text for kind, text in run.alerts if kind == 2][0].startswith(
                    "Busy: this demo is serving"
                )
                assert not run.metrics  # no model was loaded for them

            trainer, browsers, predictors = visitors[0], visitors[1:3], visitors[3:LIMIT]
            trained = pool.submit(_train, trainer)
            browsed = [pool.submit(_browse, visitor) for visitor in browsers]
            predicted = [pool.submit(_predict, visitor, index) for index, visitor in enumerate(predictors)]
            assert trained.result(timeout=300)
            for future in browsed:
                shown = future.result(timeout=300)
                assert "Test accuracy" in shown
            for future in predicted:
                assert set(future.result(timeout=300)) <= {"circle", "square", "triangle", "star"}

        for visitor in visitors[:LIMIT]:
            visitor.open()
            assert (SESSION_OPTION in visitor.options("model.choice")) == (visitor is trainer), visitor.name
        assert [error for visitor in visitors for error in visitor.errors] == []

        # A visitor leaves; one who was told "busy" presses "Try again" and is served.
        visitors[LIMIT - 1].close()
        retry, deadline = visitors[LIMIT], time.time() + 20
        run = retry.press("busy.retry")
        while not run.metrics and time.time() < deadline:  # until the server has noticed the closed tab
            time.sleep(0.25)
            run = retry.press("busy.retry")
        assert ("Prediction", "circle") in run.metrics
        assert "Traceback" not in server.output()
        peak = server.peak_rss_mb()
        print(f"server peak resident memory with {LIMIT} sessions, one training: {peak:.0f} MB")
        assert peak < 2048
    finally:
        for visitor in visitors:
            visitor.close()
