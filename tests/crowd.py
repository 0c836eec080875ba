"""Many visitors on one `streamlit run app.py`, each a client of Streamlit's own websocket protocol.

Used by bench/load.py (50 visitors, latency figures) and tests/test_crowd.py (a short run in CI).

Why the protocol and not 50 Chromium pages: on a 2-core machine fifty browsers would spend the cores
drawing pages, and the figures would measure Chromium, not the server. A protocol client costs a thread
and a socket, and it speaks to the server exactly as the browser does: the same `BackMsg`/`ForwardMsg`
protobufs over `/_stcore/stream`, uploads through the same `file_urls_request` and HTTP PUT, widget
values sent the way the browser sends them (a fragment's widgets rerun only that fragment; a form's submit
button sends the form), and a fragment's `run_every` honoured by rerunning it at its interval, as the
browser does. The browser suite (tests/e2e/test_browser.py) checks what is drawn; this checks the server.
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent


def _protos():
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.proto.Common_pb2 import FileURLs, FileURLsRequest, UploadedFileInfo
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates

    return (
        BackMsg,
        ClientState,
        FileURLs,
        FileURLsRequest,
        UploadedFileInfo,
        ForwardMsg,
        WidgetState,
        WidgetStates,
    )


# --- the server ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`streamlit run app.py` in a subprocess, with its memory and CPU sampled twice a second."""

    def __init__(self, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
            "--server.headless", "true", "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false",
            # The protocol client sends no XSRF cookie; the check is one token compare per upload.
            "--server.enableXsrfProtection", "false",
        ]  # fmt: skip
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.samples: list[tuple[float, float, float]] = []  # (time, rss MB, cpu seconds)
        self._stop = threading.Event()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/_stcore/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"streamlit did not start: {self.output()[-2000:]}")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        ticks = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(0.5):
            try:
                stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{self.process.pid}/status").read_text()
            except OSError:
                return
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            self.samples.append((time.time(), rss / 1024, (int(stat[11]) + int(stat[12])) / ticks))

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024

    def cpu(self, since: float) -> tuple[float, float]:
        """Mean and peak (over 2 s windows) cores the server used after `since`."""
        window = [sample for sample in self.samples if sample[0] >= since]
        if len(window) < 2:
            return float("nan"), float("nan")
        mean = (window[-1][2] - window[0][2]) / (window[-1][0] - window[0][0])
        peaks = [
            (later[2] - earlier[2]) / (later[0] - earlier[0])
            for earlier, later in zip(window, window[4:])
            if later[0] > earlier[0]
        ]
        return mean, max(peaks, default=mean)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        self._stop.set()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --- one visitor ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What one script run showed."""

    seconds: float
    alerts: list[tuple[int, str]]  # (Alert.format: 1 error, 2 warning, 3 info, 4 success, text)
    exceptions: list[str]
    metrics: list[tuple[str, str]]  # (label, value)
    images: int


class Visitor:
    """One browser tab's worth of Streamlit protocol: a websocket session with its widgets and pages."""

    def __init__(self, server_url: str, name: str, timeout: float = 120.0):
        self.name = name
        self.url = server_url
        self.timeout = timeout
        self.socket = connect(
            server_url.replace("http", "ws") + "/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=None,
            open_timeout=timeout,
        )
        self.session_id = ""
        self.pages: dict[str, str] = {}  # url path name -> page script hash
        self.page_hash = ""
        self.elements: dict[tuple, object] = {}  # delta path -> Element, the latest run's
        self.fragment_of: dict[str, str] = {}  # widget id -> fragment id
        self.auto_reruns: dict[str, float] = {}  # fragment id -> interval
        self.errors: list[str] = []  # every exception or error box this visitor was shown
        self.runs: list[Run] = []

    # -- sending --------------------------------------------------------------------------------------

    def _send_rerun(self, widgets=(), fragment_id: str = "", auto: bool = False) -> None:
        BackMsg, ClientState, *_, WidgetState, WidgetStates = _protos()
        message = BackMsg()
        state = ClientState(
            page_script_hash=self.page_hash,
            fragment_id=fragment_id,
            is_auto_rerun=auto,
            widget_states=WidgetStates(widgets=list(widgets)),
        )
        message.rerun_script.CopyFrom(state)
        self.socket.send(message.SerializeToString())

    def _receive(self):
        ForwardMsg = _protos()[5]
        message = ForwardMsg()
        message.ParseFromString(self.socket.recv(timeout=self.timeout))
        return message

    def _run(
        self, widgets=(), fragment_id: str = "", auto: bool = False, started: float | None = None
    ) -> Run:
        """Sends one rerun and reads until the script (or fragment) finishes."""
        started = time.perf_counter() if started is None else started
        if not fragment_id:
            self.elements = {}
        before = dict(self.elements)
        self._send_rerun(widgets, fragment_id, auto)
        while True:
            message = self._receive()
            kind = message.WhichOneof("type")
            if kind == "new_session":  # a script run starts
                self.session_id = message.new_session.initialize.session_id or self.session_id
                self.page_hash = message.new_session.page_script_hash or self.page_hash
                if not message.metadata.run.fragment_ids:
                    # A full run (also one a fragment asked for with st.rerun): the page is drawn anew,
                    # and the browser drops the old run's auto-reruns.
                    self.elements, self.auto_reruns = {}, {}
                    before = {}
            elif kind == "navigation":
                self.pages = {
                    page.url_pathname: page.page_script_hash for page in message.navigation.app_pages
                }
                self.page_hash = message.navigation.page_script_hash or self.page_hash
            elif kind == "delta":
                self._delta(message)
            elif kind == "auto_rerun":
                self.auto_reruns[message.auto_rerun.fragment_id] = message.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                self.auto_reruns.clear()
            elif kind == "script_finished":
                if message.script_finished == 2:  # finished early for a rerun: another run follows
                    continue
                break
        new = {path: element for path, element in self.elements.items() if before.get(path) is not element}
        run = self._summary(new.values(), time.perf_counter() - started)
        self.runs.append(run)
        self.errors += [f"{self.name}: exception: {text}" for text in run.exceptions]
        self.errors += [f"{self.name}: error box: {text}" for kind, text in run.alerts if kind == 1]
        return run

    def _delta(self, message) -> None:
        delta = message.delta
        if delta.WhichOneof("type") != "new_element":
            return
        element = delta.new_element
        path = tuple(message.metadata.delta_path)
        self.elements[path] = element
        widget = getattr(element, element.WhichOneof("type") or "", None)
        widget_id = getattr(widget, "id", "")
        if widget_id and delta.fragment_id:
            self.fragment_of[widget_id] = delta.fragment_id

    @staticmethod
    def _summary(elements, seconds: float) -> Run:
        alerts, exceptions, metrics, images = [], [], [], 0
        for element in elements:
            kind = element.WhichOneof("type")
            if kind == "alert":
                alerts.append((int(element.alert.format), element.alert.body))
            elif kind == "exception":
                exceptions.append(f"{element.exception.type}: {element.exception.message}"[:300])
            elif kind == "metric":
                metrics.append((element.metric.label, element.metric.body))
            elif kind == "imgs":
                images += len(element.imgs.imgs)
        return Run(seconds, alerts, exceptions, metrics, images)

    def widget(self, kind: str, key: str):
        """The latest `kind` element (e.g. "file_uploader") whose user key is `key`."""
        for element in self.elements.values():
            if element.WhichOneof("type") == kind and getattr(element, kind).id.endswith(f"-{key}"):
                return getattr(element, kind)
        raise LookupError(f"{self.name}: no {kind} with key {key!r} on the page")

    # -- what a visitor does ----------------------------------------------------------------------------

    def open(self, page: str = "") -> Run:
        """Loads a page, as following a link or clicking it in the sidebar does ("" is the default page)."""
        if page:
            self.page_hash = self.pages[page]
        return self._run()

    def upload(self, key: str, name: str, data: bytes, mime: str = "image/png") -> Run:
        """Uploads a file into the uploader with user key `key`, as the browser does; timed from the click."""
        BackMsg, _, FileURLs, FileURLsRequest, UploadedFileInfo, _, WidgetState, _ = _protos()
        started = time.perf_counter()
        uploader = self.widget("file_uploader", key)
        request = BackMsg()
        request.file_urls_request.CopyFrom(
            FileURLsRequest(request_id=uuid.uuid4().hex, file_names=[name], session_id=self.session_id)
        )
        self.socket.send(request.SerializeToString())
        while True:
            message = self._receive()
            if message.WhichOneof("type") == "file_urls_response":
                urls = message.file_urls_response.file_urls[0]
                break
            if message.WhichOneof("type") == "delta":
                self._delta(message)
        answer = requests.put(
            self.url + urls.upload_url, files={"file": (name, data, mime)}, timeout=self.timeout
        )
        answer.raise_for_status()
        state = WidgetState(id=uploader.id)
        state.file_uploader_state_value.uploaded_file_info.append(
            UploadedFileInfo(
                file_id=urls.file_id,
                name=name,
                size=len(data),
                file_urls=FileURLs(
                    file_id=urls.file_id, upload_url=urls.upload_url, delete_url=urls.delete_url
                ),
            )
        )
        return self._run([state], fragment_id=self.fragment_of.get(uploader.id, ""), started=started)

    def press(self, key: str) -> Run:
        """Clicks the button with user key `key`."""
        WidgetState = _protos()[6]
        button = self.widget("button", key)
        return self._run([WidgetState(id=button.id, trigger_value=True)], self.fragment_of.get(button.id, ""))

    def submit(self, form_id: str) -> Run:
        """Presses a form's submit button."""
        WidgetState = _protos()[6]
        for element in self.elements.values():
            button = element.button if element.WhichOneof("type") == "button" else None
            if button is not None and button.form_id == form_id and button.is_form_submitter:
                return self._run([WidgetState(id=element.button.id, trigger_value=True)])
        raise LookupError(f"{self.name}: no submit button in form {form_id!r}")

    def poll(self, seconds: float) -> None:
        """Stays on the page for `seconds`, rerunning its `run_every` fragments at their interval."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if not self.auto_reruns:
                time.sleep(min(0.5, max(0.0, end - time.perf_counter())))
                continue
            fragment_id, interval = next(iter(self.auto_reruns.items()))
            time.sleep(interval)
            self._run(fragment_id=fragment_id, auto=True)

    def options(self, key: str) -> list[str]:
        return list(self.widget("selectbox", key).options)

    def close(self) -> None:
        self.socket.close()


def image_png(seed: int, size: tuple[int, int] = (480, 640)) -> bytes:
    """A photo-sized noise image with a shape drawn on it (something for the classifier to find)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (*size, 3), dtype=np.uint8)
    top, left = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    image[top : top + size[0] // 3, left : left + size[1] // 3] = rng.integers(150, 255, 3)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
