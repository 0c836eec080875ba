"""The studio in a real browser: `streamlit run app.py` driven by Playwright + Chromium.

Needs Debian's Chromium (`apt-get install chromium`, at /usr/bin/chromium or
$CNNVIZ_CHROMIUM). Without it these tests skip with the reason, unless
CNNVIZ_REQUIRE_E2E=1 (set by .ci/run), where they fail. With
CNNVIZ_UPDATE_SCREENSHOTS=1 they also write docs/screenshots/*.png.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CNNVIZ_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _expect(locator):
    """Playwright's `expect`, which retries until the page shows what is asserted (a count right after a
    wait can run before Streamlit has drawn the rest of the page)."""
    from playwright.sync_api import expect

    return expect(locator)


def _missing_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


_REASON = _missing_reason()
if _REASON and os.environ.get("CNNVIZ_REQUIRE_E2E") == "1":
    raise RuntimeError(f"browser tests are required (CNNVIZ_REQUIRE_E2E=1) but {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


SERVER = {}  # the running server's pid, for memory readings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_share(pid: int, seconds: float = 3.0) -> float:
    """The process's CPU use over the next `seconds`, in cores (1.0 = one core busy)."""
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    return (_cpu_seconds(pid) - before) / seconds


@contextlib.contextmanager
def _streamlit_server(log_folder: Path, **limits: str):
    """`streamlit run app.py` on a free port (`limits`: CNNVIZ_* overrides); yields its URL once it answers."""
    port = _free_port()
    # A run stops 5 s after its tab closes (30 s by default), so the test of that is short.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CNNVIZ_MAX_UNWATCHED_SECONDS="5", **limits)
    # A file, not a pipe: nobody reads a pipe while the tests run, and a full one would block the server.
    log = open(log_folder / "streamlit.log", "w+b")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        log.seek(0)
        pytest.fail(f"streamlit did not start: {log.read().decode(errors='replace')[-2000:]}")
    try:
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with _streamlit_server(tmp_path_factory.mktemp("server")) as (url, pid):
        SERVER["pid"] = pid  # for the tests that read its CPU use and memory
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    yield page
    page.close()


def _screenshot(page, name: str) -> None:
    if os.environ.get("CNNVIZ_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _metric(page) -> str:
    return page.get_by_test_id("stMetricValue").first.inner_text()


def test_a_deep_link_as_the_first_request_gets_the_studios_navigation(server, page):
    # First in this file on purpose: the server's first request is this deep link. Streamlit then
    # starts in its legacy multipage mode (a pages/ folder exists) and, unmended, kept showing
    # lowercase file names as the navigation until somebody opened "/".
    page.goto(f"{server}/weights")
    # While the first model loads (TensorFlow starts: seconds), the menu is already the studio's
    # and the page already shows its title and what it is about.
    page.get_by_text("Loading TensorFlow and the model").wait_for()
    assert "Look inside" in page.get_by_test_id("stSidebarNav").inner_text()
    _expect(page.locator("h1", has_text="Weights")).to_have_count(1, timeout=30_000)
    page.locator(".js-plotly-plot").first.wait_for()
    navigation = page.get_by_test_id("stSidebarNav")
    navigation.get_by_text("Look inside").wait_for()
    assert "activations" not in navigation.inner_text()  # the legacy list's lowercase name
    assert page.get_by_test_id("stException").count() == 0


def test_a_new_visitor_is_answered_from_onnx_while_tensorflow_starts_then_gets_the_full_page(
    browser, tmp_path
):
    # A server of its own: its first request is "/", and TensorFlow starts loading in the background.
    with _streamlit_server(tmp_path) as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(url)
        # TensorFlow takes seconds to import (3.6 to 7 s measured); the answer comes before it, from ONNX.
        page.get_by_text("loading TensorFlow").first.wait_for()
        _expect(page.locator("h1", has_text="What does the network see")).to_have_count(1, timeout=30_000)
        assert "Look inside" in page.get_by_test_id("stSidebarNav").inner_text()
        assert _metric(page) == "circle"
        # The image and its Grad-CAM: they may arrive a moment after the metric (a count does not wait).
        _expect(page.locator("[data-testid=stImage] img")).to_have_count(2, timeout=30_000)
        _screenshot(page, "predict-before-tensorflow")
        page.get_by_text("Grad-CAM++").wait_for()  # then the full page: every method offered
        assert _metric(page) == "circle"
        assert page.get_by_test_id("stException").count() == 0
        page.close()


def test_the_sidebar_describes_the_default_model_by_itself_once_tensorflow_has_loaded(browser, tmp_path):
    from playwright.sync_api import expect

    # A server of its own, first opened on a page that does not wait for the model: its sidebar says the
    # model is loading, then, with no click, what the model is.
    with _streamlit_server(tmp_path) as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(f"{url}/data")
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("the model's details appear in a moment").wait_for()
        expect(sidebar.get_by_text("4 classes: circle, square, triangle, star")).to_be_visible(timeout=60_000)
        expect(sidebar.get_by_text("the model's details appear in a moment")).to_have_count(0)
        assert page.get_by_test_id("stException").count() == 0
        page.close()


def test_a_visitor_past_the_session_limit_sees_the_busy_page_and_is_served_once_a_place_frees(
    browser, tmp_path
):
    with _streamlit_server(tmp_path, CNNVIZ_MAX_SESSIONS="1") as (url, _):
        first = browser.new_page(viewport={"width": 1400, "height": 1000})
        first.set_default_timeout(90_000)
        first.goto(url)
        first.get_by_test_id("stMetricValue").wait_for()
        second = browser.new_page(viewport={"width": 1400, "height": 1000})
        second.set_default_timeout(30_000)
        started = time.perf_counter()
        second.goto(url)
        second.get_by_text("Busy: this demo is serving as many visitors as it can at once (1)").wait_for()
        print(f"busy page shown after {time.perf_counter() - started:.2f} s")
        assert second.get_by_test_id("stException").count() == 0
        assert second.get_by_test_id("stSidebarNav").count() == 0  # no menu of pages it cannot open
        _screenshot(second, "busy")
        first.close()
        second.wait_for_timeout(1000)  # the server notices the closed tab
        second.get_by_role("button", name="Try again").click()
        second.get_by_test_id("stMetricValue").wait_for()
        assert _metric(second) == "circle"
        assert second.get_by_test_id("stException").count() == 0
        second.close()


def test_predict_page_answers_a_sample_and_an_upload_with_a_heatmap(server, page, tmp_path):
    from PIL import Image

    from cnnviz.shapes import SHAPE_CLASSES, generate_shapes

    page.goto(server)
    page.get_by_test_id("stMetricValue").wait_for()
    assert _metric(page) == "circle"
    images = page.locator("[data-testid=stImage] img")
    images.nth(1).wait_for()
    _expect(images).to_have_count(2)  # the image and its heatmap overlay
    assert "Grad-CAM on act4" in page.get_by_test_id("stImageCaption").nth(1).inner_text()
    page.locator(".js-plotly-plot").first.wait_for()  # the top-5 bars
    _screenshot(page, "predict")

    shapes, labels, _ = generate_shapes(16, seed=99)
    index = int((labels == 3).argmax())  # a star
    path = tmp_path / "my_star.png"
    Image.fromarray(shapes[index]).save(path)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    page.get_by_text("my_star.png").last.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stMetricValue]').innerText === 'star'", timeout=60_000
    )
    assert _metric(page) == SHAPE_CLASSES[3]


def test_a_broken_upload_gets_a_message_not_a_traceback(server, page, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a png")
    page.goto(server)
    page.get_by_test_id("stMetricValue").wait_for()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    alert = page.get_by_test_id("stAlert")
    alert.wait_for()
    assert "Try another file" in alert.inner_text()
    assert page.get_by_test_id("stException").count() == 0


def test_pages_switch_and_keep_the_sidebar_model_choice(server, page):
    page.goto(server)
    page.get_by_test_id("stMetricValue").wait_for()
    for title, name in (
        ("Data", "data"),
        ("Build", "build"),
        ("Activations", "activations"),
        ("Weights", "weights"),
    ):
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        page.locator("h1", has_text=title).wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        assert page.get_by_test_id("stException").count() == 0
        sidebar = page.get_by_test_id("stSidebar")
        assert "4 classes: circle, square, triangle, star" in sidebar.inner_text()
        _screenshot(page, name)


def test_clicking_a_mistake_cell_shows_its_images_and_why_the_model_chose_its_class(server, page):
    page.goto(f"{server}/results")
    matrix = page.locator(".js-plotly-plot").first
    matrix.wait_for()
    page.wait_for_timeout(1500)
    _screenshot(page, "results")
    # An off-diagonal cell with images: a small count (the diagonal holds hundreds).
    target = None
    for text in matrix.locator("g.hm text, text").all():
        content = text.text_content().strip()
        if content.isdigit() and 1 <= int(content) < 50:
            target = text
    assert target is not None, "the default model makes a few mistakes on its test split"
    box = target.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2 - 4, box["y"] + box["height"] / 2 - 4)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    cell_heading = page.locator("h3", has_text="predicted")
    cell_heading.wait_for()
    assert "image" in cell_heading.inner_text()
    heading = page.locator("h4", has_text="and not")
    heading.wait_for(timeout=60000)
    assert heading.inner_text().startswith("Why ")
    page.get_by_text("what would have to change for").wait_for(timeout=60000)
    heading.scroll_into_view_if_needed()
    _screenshot(page, "results-why-not")


def test_clicking_a_dot_on_the_map_shows_that_test_image_its_heatmap_and_five_neighbours(server, page):
    page.goto(f"{server}/map")
    dots = page.locator(".js-plotly-plot .scatterlayer path.point")
    dots.first.wait_for(timeout=120000)
    _expect(dots).to_have_count(1200)  # every test image of the default model
    _screenshot(page, "map")
    dots.nth(40).click(force=True)
    caption = page.get_by_text(re.compile(r"^Test image \d+: a \w+, called \w+ \((right|wrong)\)$"))
    caption.wait_for(timeout=60000)
    page.get_by_text("Its 5 nearest neighbours").first.wait_for()
    # The image, its heatmap, and 5 neighbours.
    _expect(page.locator('[data-testid="stImage"]')).to_have_count(7)


def test_training_shows_live_curves_and_stop_keeps_the_model(server, page):
    # Digits: short epochs even on a loaded 2-core machine; 50 epochs and no time budget, so Stop ends the run.
    page.goto(f"{server}/train?data.source=%22digits%22&train.epochs=50&train.budget=0")
    # The Train page never asks for the sidebar's model; app.py still describes it there.
    page.get_by_test_id("stSidebar").get_by_text("4 classes: circle, square, triangle, star").wait_for()
    page.get_by_role("button", name="Train").click()
    stop = page.get_by_test_id("stButton").get_by_role("button", name="Stop")  # not the status widget's
    stop.wait_for()
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)  # the curves after the first epoch
    _screenshot(page, "train")
    stop.click()
    done = page.get_by_test_id("stAlertContentSuccess")
    done.wait_for(timeout=60_000)
    assert "stopped" in done.inner_text().lower()
    assert "Trained in this session" in done.inner_text()
    page.get_by_role("button", name="Download run 1's model (.keras)").wait_for(timeout=30_000)
    with page.expect_download() as model_download:
        page.get_by_role("button", name="Download run 1's model (.keras)").click()
    import cnnviz

    downloaded = Path(model_download.value.path()).rename(
        Path(model_download.value.path()).with_suffix(".keras")
    )
    model = cnnviz.load_model(downloaded)  # a complete, loadable file with its classes
    assert cnnviz.class_names_of(model) == tuple("0123456789")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download run 1's TensorBoard logs (.zip)").click()
    import zipfile

    names = zipfile.ZipFile(download.value.path()).namelist()
    assert any(name.startswith("train/events.out.tfevents") for name in names)
    assert page.get_by_test_id("stException").count() == 0


def test_closing_the_tab_stops_its_training(server, browser):
    # A hosted demo: a visitor who starts a run and leaves must not keep the server busy.
    context = browser.new_context()
    page = context.new_page()
    # A run of many minutes if nothing stopped it: the deeper net, small batches, 50 epochs, no time budget.
    page.goto(
        f"{server}/train?data.source=%22digits%22&train.design=%22tutorial_improved%22"
        "&train.batch_size=8&train.epochs=50&train.budget=0"
    )
    page.get_by_role("button", name="Train").click()
    page.get_by_test_id("stButton").get_by_role("button", name="Stop").wait_for(timeout=90_000)
    page.get_by_text(re.compile(r"epoch \d+ ·")).wait_for(timeout=90_000)  # the batches are running
    training = _cpu_share(SERVER["pid"])
    assert training > 0.5  # at least half a core while it trains
    context.close()
    deadline = time.monotonic() + 45  # it stops 5 s after the session is gone (the server's setting)
    shares = []  # 3 s samples; idle is three quiet samples in a row (an epoch's end dips for one)
    while time.monotonic() < deadline and not (len(shares) >= 3 and max(shares[-3:]) < 0.25):
        shares.append(_cpu_share(SERVER["pid"]))
    assert max(shares[-3:]) < 0.25, f"the server still works after the tab closed: {shares} cores"


def test_improve_page_compares_variants_in_one_chart(server, page):
    from urllib.parse import quote

    variants = quote(json.dumps(["baseline", "batch_norm"]))
    page.goto(server)  # through app.py first, as a visitor arrives
    page.get_by_test_id("stMetricValue").wait_for()
    page.goto(f"{server}/improve?data.source=%22digits%22&improve.budget=5&improve.variants={variants}")
    page.locator("h1", has_text="Compare variants").wait_for()
    page.get_by_role("button", name="Compare", exact=True).click()
    best = page.get_by_test_id("stAlertContentSuccess")
    best.wait_for(timeout=120_000)
    assert best.inner_text().startswith("Best:")
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    assert "baseline" in chart.inner_text() and "batch_norm" in chart.inner_text()
    page.get_by_role("button", name="Download the TensorBoard logs (.zip)").wait_for()
    assert page.get_by_test_id("stException").count() == 0
    _screenshot(page, "improve")


def test_drawing_a_digit_gets_an_answer(server, page):
    page.goto(server)
    page.get_by_test_id("stMetricValue").wait_for()
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="Handwritten digits (default model)").click()
    # Wait until the digits model is in.
    page.get_by_test_id("stSidebar").get_by_text("10 classes", exact=False).wait_for()
    page.get_by_text("Draw a digit").click()
    canvas = page.locator("canvas").first
    canvas.wait_for()
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    middle = box["x"] + box["width"] / 2
    page.mouse.move(middle, box["y"] + 40)
    page.mouse.down()
    for step in range(20):  # a thick vertical stroke: a one
        page.mouse.move(middle, box["y"] + 40 + step * 10)
    page.mouse.up()
    page.get_by_text("your drawing").wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stMetricValue]').innerText === '1'", timeout=90_000
    )
    assert page.get_by_test_id("stException").count() == 0


def test_uploading_a_model_file_or_a_broken_one(server, page, tmp_path):
    page.goto(server)
    page.get_by_test_id("stMetricValue").wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="Upload a .keras model").click()
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    sidebar.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(broken))
    error = sidebar.get_by_test_id("stAlert")
    error.wait_for()
    assert "not a Keras 3 .keras model file" in error.inner_text()
    assert page.get_by_test_id("stException").count() == 0
    sidebar.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(ROOT / "assets" / "models" / "digits.keras")
    )
    sidebar.get_by_text("10 classes: 0, 1, 2").wait_for()
    page.get_by_text("Upload an image to start").wait_for()  # no samples for an uploaded model
    _expect(page.get_by_text("Draw a digit")).to_have_count(1)  # one-channel input: drawing is offered
    assert page.get_by_test_id("stException").count() == 0


# A sample of the corpus (every file goes through the same loader as in tests/test_reliability.py):
# one per way of failing in the browser, and the unusual files most likely to trip a browser upload.
BROWSER_BAD = ("text.png", "bomb.png", "truncated.jpg", "drawing.svg")
BROWSER_GOOD = ("gray16.png", "rotated.jpg", "animated.gif", "strip.png")


def test_hostile_and_unusual_uploads_get_an_answer_or_a_clear_message(server, page, tmp_path):
    sys.path.insert(0, str(ROOT))
    from tests import hostile

    page.goto(server)
    page.get_by_test_id("stMetricValue").wait_for()
    uploader = page.get_by_test_id("stFileUploaderDropzoneInput")
    refused = answered = 0
    for name, data, _ in hostile.bad_images():
        if name not in BROWSER_BAD:
            continue
        path = tmp_path / name
        path.write_bytes(data)
        uploader.set_input_files(str(path))
        # Our own message, or (for a type the uploader does not take, e.g. SVG) the uploader's.
        message = (
            page.get_by_test_id("stAlert")
            .filter(has_text="Try another file")
            .or_(page.get_by_test_id("stFileUploaderFileErrorMessage"))
        )
        message.first.wait_for(timeout=60_000)
        assert page.get_by_test_id("stException").count() == 0, name
        refused += 1
    for name, data, _ in hostile.good_images():
        if name not in BROWSER_GOOD:
            continue
        path = tmp_path / name
        path.write_bytes(data)
        uploader.set_input_files(str(path))
        page.get_by_test_id("stImageCaption").filter(has_text=name).first.wait_for(timeout=60_000)
        assert _metric(page) in ("circle", "square", "triangle", "star"), name
        assert page.get_by_test_id("stException").count() == 0, name
        answered += 1
    assert (refused, answered) == (len(BROWSER_BAD), len(BROWSER_GOOD))


def test_four_sessions_at_once_two_training_each_sees_only_its_own(server, browser, tmp_path):
    # In real tabs; the crowd of twelve, and its memory, is tests/test_crowd.py's (over the protocol).
    from PIL import Image

    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(4)]
    pages = [context.new_page() for context in contexts]
    try:
        for page in pages:
            page.set_default_timeout(180_000)
            page.goto(server)
        for page in pages:
            page.get_by_test_id("stMetricValue").wait_for()
        trainers, visitors = pages[:2], pages[2:]
        for page in trainers:
            page.goto(f"{server}/train?data.source=%22digits%22&train.epochs=50&train.budget=0")
            page.get_by_role("button", name="Train", exact=True).click()
        for number, page in enumerate(visitors):
            path = tmp_path / f"visitor{number}.png"
            color = (40 * number, 200, 255 - 30 * number)
            image = Image.new("RGB", (64, 64), (20, 20, 20))
            image.paste(color, (16, 16, 48, 48))
            image.save(path)
            page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
        for number, page in enumerate(visitors):
            page.get_by_test_id("stImageCaption").filter(has_text=f"visitor{number}.png").first.wait_for()
        for page in trainers:
            stop = page.get_by_test_id("stButton").get_by_role("button", name="Stop")
            stop.wait_for()
            stop.click()
        for page in trainers:
            page.get_by_test_id("stAlertContentSuccess").wait_for()
            assert "Run 1:" in page.get_by_test_id("stAlertContentSuccess").inner_text()
            # Its own run only: one row in its history, run 1's download, no run 2.
            page.get_by_role("button", name="Download run 1's model (.keras)").wait_for()
            assert page.get_by_role("button", name="Download run 2's model (.keras)").count() == 0
            page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
            _expect(page.get_by_role("option", name="Trained in this session")).to_have_count(1)
            page.keyboard.press("Escape")
        for page in visitors:  # nobody else's model appears in a visitor's choices
            page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
            assert page.get_by_role("option", name="Trained in this session").count() == 0
            page.keyboard.press("Escape")
            assert page.get_by_test_id("stException").count() == 0
    finally:
        for context in contexts:
            context.close()


def test_a_model_card_opens_offline_and_every_figure_and_image_renders(browser, tmp_path):
    import cnnviz
    from cnnviz import runs
    from cnnviz.saving import get_metadata

    model = cnnviz.load_model(ROOT / "assets" / "models" / "shapes.keras")
    assert get_metadata(model)["training"]["history"]  # the shipped model records its training curves
    card = tmp_path / "card.html"
    card.write_text(runs.model_card(model))
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors, fetched = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: fetched.append(request.url))
    page.goto(card.as_uri())
    page.locator(".js-plotly-plot").nth(1).wait_for()
    assert errors == []
    assert [url for url in fetched if not url.startswith(("file:", "data:"))] == []
    figures = page.locator(".plotly-graph-div").count()
    # The training curves, the confusion matrix and the per-class bars, each one drawn.
    assert figures == 3 and page.locator(".js-plotly-plot").count() == figures
    assert page.evaluate("[...document.images].every(image => image.complete && image.naturalWidth > 0)")
    assert page.evaluate("document.images.length") >= 2 * 4  # samples and mistakes, each with its heatmap
    _screenshot(page, "model-card")
    context.close()
