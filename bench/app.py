"""Studio speed, measured in a real browser (Playwright + Debian Chromium).

Run: python bench/app.py

- minimal: a Streamlit app of a title and a file uploader, started and timed the same way -> first paint (the
  floor every Streamlit app pays); the cold figure is also given as a multiple of it
- cold: `streamlit run app.py` started -> the Predict page's title, then its first prediction and heatmap, shown
  (answered from the default model's ONNX export while TensorFlow loads: ui/quick.py)
- upload: a new PNG uploaded -> its class and heatmap shown (warm; median of several)
- switch: clicking another page in the sidebar -> its title and first figure shown (median)
- memory: resident memory of the server process after all of the above (one session)
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = os.environ.get("CNNVIZ_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


MINIMAL_APP = """import streamlit as st

st.title("Minimal app")
st.file_uploader("Upload an image")
"""


def open_cold(page, app: Path, cwd: Path) -> subprocess.Popen:
    """Starts `streamlit run APP` on a free port and opens it in `page` as soon as it answers."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while True:
        try:
            page.goto(f"http://127.0.0.1:{port}/")
            return server
        except Exception:
            time.sleep(0.1)


def minimal_first_paint(browser, folder: Path) -> float:
    """`streamlit run` of a title and a file uploader, started and timed as the studio is below."""
    app = folder / "minimal_app.py"
    app.write_text(MINIMAL_APP)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    start = time.perf_counter()
    server = open_cold(page, app, folder)
    try:
        page.locator("h1", has_text="Minimal app").wait_for()
        page.get_by_test_id("stFileUploaderDropzoneInput").wait_for(state="attached")
        return time.perf_counter() - start
    finally:
        page.close()
        server.terminate()
        server.wait(timeout=30)


def main():
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from cnnviz.shapes import SHAPE_CLASSES, generate_shapes

    images, labels, _ = generate_shapes(40, seed=4242)
    folder = Path(tempfile.mkdtemp())
    files = []
    for index in range(8):
        path = folder / f"upload_{index}.png"
        Image.fromarray(images[index]).save(path)
        files.append((path, SHAPE_CLASSES[labels[index]]))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        minimal = minimal_first_paint(browser, folder)
        print(
            f"minimal Streamlit app (a title and a file uploader), cold start -> first paint: {minimal:.2f} s"
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        start = time.perf_counter()
        server = open_cold(page, ROOT / "app.py", ROOT)
        try:
            page.locator("h1", has_text="What does the network see").wait_for()
            titled = time.perf_counter() - start
            page.locator("[data-testid=stImage] img").nth(1).wait_for()  # image + heatmap
            page.get_by_test_id("stMetricValue").wait_for()
            cold = time.perf_counter() - start
            early_memory = rss_mb(server.pid)
            from_onnx = page.get_by_text("loading TensorFlow").count() > 0  # answered before TensorFlow
            page.get_by_text("Grad-CAM++").wait_for()  # TensorFlow is in: the full page
            print(
                f"cold start -> page title: {titled:.2f} s; first prediction with heatmap: {cold:.2f} s",
                flush=True,
            )

            upload_times = []
            overlay = "document.querySelectorAll('[data-testid=stImage] img')[1]"
            for path, expected in files:
                previous = page.evaluate(f"{overlay}.src")
                start = time.perf_counter()
                page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
                # Shown: the uploaded image's caption is there and the heatmap overlay has changed.
                page.wait_for_function(
                    "([name, previous]) => [...document.querySelectorAll('[data-testid=stImageCaption]')]"
                    f".some(e => e.innerText.includes(name)) && {overlay} && {overlay}.src !== previous",
                    arg=[path.name, previous],
                    polling=20,
                )
                upload_times.append(time.perf_counter() - start)
                shown = page.get_by_test_id("stMetricValue").first.inner_text()
                print(
                    f"  upload {path.name}: {upload_times[-1]:.2f} s -> {shown} (true {expected})", flush=True
                )
            upload = statistics.median(upload_times[1:])  # the first upload warms the uploader

            switch_times = []
            for _ in range(3):
                for title in ("Weights", "Activations", "Predict"):
                    start = time.perf_counter()
                    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
                    if title == "Predict":
                        page.locator("h1", has_text="What does the network see").wait_for()
                        page.locator("[data-testid=stImage] img").nth(1).wait_for()
                    else:
                        page.locator("h1", has_text=title).wait_for()
                        page.locator(".js-plotly-plot").first.wait_for()
                    switch_times.append(time.perf_counter() - start)
            switch = statistics.median(switch_times[3:])  # first round warms each page's caches
            memory = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
            browser.close()

    rows = [
        ("cold `streamlit run app.py` -> the Predict page's title shown", f"{titled:.2f} s", "(reported)"),
        ("cold `streamlit run app.py` -> first prediction with heatmap shown", f"{cold:.2f} s", "<= 8 s"),
        (
            "cold minimal Streamlit app (title + file uploader) -> first paint, same way",
            f"{minimal:.2f} s",
            "(floor)",
        ),
        ("first prediction with heatmap / minimal app's first paint", f"{cold / minimal:.2f} x", "<= 1.5 x"),
        ("upload -> class + heatmap shown, warm (median of 7)", f"{upload:.2f} s", "<= 1 s"),
        ("switching pages, warm (median of 6)", f"{switch:.2f} s", "<= 0.5 s"),
        (
            "server resident memory at the first answer"
            + (" (from ONNX, TensorFlow loading)" if from_onnx else ""),
            f"{early_memory:.0f} MB",
            "(reported)",
        ),
        ("server resident memory, default model + one session", f"{memory:.0f} MB", "<= 1 GB"),
    ]
    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")
    print(
        f"\nall upload times: {[round(t, 2) for t in upload_times]}; switches: {[round(t, 2) for t in switch_times]}"
    )
    return 0 if np.isfinite(memory) else 1


if __name__ == "__main__":
    sys.exit(main())
