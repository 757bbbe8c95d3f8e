"""A headless Chromium driven over the Chrome DevTools Protocol, for the browser tests.

The browser is Debian's `chromium` (CI installs it), spoken to over its DevTools websocket with
websocket-client. Chromium missing: a skip locally, a failure under CI=true.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import free_port, missing_tool

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("GATEWAY_TEST_ARTIFACTS", REPO / "test-artifacts"))


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    missing_tool("no headless Chromium (apt-get install -y chromium; .ci/run installs it)")
    raise AssertionError("unreachable")


class Browser:
    """One headless Chromium tab, driven over the DevTools protocol."""

    def __init__(self, executable: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="gateway-chromium-")
        self.port = free_port()
        self.log = open(Path(self.profile) / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
             f"--remote-debugging-port={self.port}", "--remote-allow-origins=*",
             f"--user-data-dir={self.profile}", "--window-size=1400,1000", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.ws: Any = None
        self.ids = itertools.count(1)

    def connect(self) -> Browser:
        import websocket  # websocket-client, a test dependency

        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            try:
                tabs = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=5).json()
                page = next(t for t in tabs if t["type"] == "page")
                break
            except (httpx.HTTPError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)  # fmt: skip
        return self

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:  # skip events; answers come in order of the calls
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def set_files(self, element_id: str, *paths: Path) -> None:
        """Pick files in an <input type=file>, as a user would in the file dialog (the page
        sees a real File and no test hook is needed)."""
        r = self.call("Runtime.evaluate", expression=f"document.getElementById({element_id!r})")
        self.call("DOM.setFileInputFiles", files=[str(p) for p in paths],
                  objectId=r["result"]["objectId"])  # fmt: skip

    def wait(self, state_js: str, what: str, predicate: Callable[[dict], bool],
             deadline_s: float, seen: list[dict] | None = None) -> dict:  # fmt: skip
        """Poll what the page shows (`state_js` reads it from the DOM) until `predicate` holds;
        the deadline only turns a broken build into a failure instead of a hang."""
        deadline = time.monotonic() + deadline_s
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.eval(state_js) or {}
            if seen is not None:
                seen.append(state)
            if state and predicate(state):
                return state
            time.sleep(0.1)
        raise AssertionError(f"the page never showed {what}; last: {state}")

    def screenshot(self, path: Path) -> Path:
        height = int(self.eval("document.documentElement.scrollHeight") or 1000)
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=max(800, height),
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Browser]:
    """A fresh Chromium per test (import `browser_fixture` to use it as `browser`)."""
    b = Browser(chromium())
    try:
        yield b.connect()
    finally:
        b.close()
