"""Fixtures for the web client's browser tests.

Each test gets its own `tern serve` (fresh data directory, ports chosen by the system) and opens
browser contexts on it; the browser is the system's Chromium, launched once per run. Every
expectation waits at most TIMEOUT_MS, so a client that never shows what it should fails in
seconds, and pytest-timeout (pytest.ini) ends a test that hangs anyway.
"""

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# No sandbox: CI runs as root, where Chromium's sandbox refuses to start. The rest keeps the
# browser from reaching out (updates, sync, field trials) on machines that cannot.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

SCREENSHOTS = Path(os.environ.get("WEB_SCREENSHOTS", "target/web-screenshots"))

LISTENING = re.compile(r"^tern: http listening on (\S+)", re.M)


class Server:
    """One `tern serve` on one data directory.

    The first start takes any free HTTP port; later starts take the same one again, so that the
    pages already open reconnect to the address they were loaded from, as after a real restart.
    """

    def __init__(self, binary, data_dir, log_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = 0
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def start(self):
        assert self.proc is None, "the server is already running"
        deadline = time.monotonic() + 10
        while True:
            self.starts += 1
            out = self.log_dir / f"server-{self.starts}.out"
            err = self.log_dir / f"server-{self.starts}.err"
            env = dict(
                os.environ,
                TERN_ARGON2_MEMORY_KIB="64",
                TERN_ARGON2_ITERATIONS="1",
                TERN_LOG="warn",
            )
            with open(out, "w") as o, open(err, "w") as e:
                proc = subprocess.Popen(
                    [
                        self.binary,
                        "serve",
                        "--data-dir",
                        str(self.data_dir),
                        "--tcp-addr",
                        "127.0.0.1:0",
                        "--http-addr",
                        f"127.0.0.1:{self.port}",
                    ],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=o,
                    stderr=e,
                )
            addr = self._listening(proc, out, deadline)
            if addr is not None:
                break
            # Started again on its old port right after a crash, the bind can still find the
            # port taken for a moment; anything else, or for longer, is a real failure.
            if self.port == 0 or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{err.read_text()}")
            time.sleep(0.1)
        self.proc = proc
        self.port = int(addr.rsplit(":", 1)[1])
        self._wait_healthy(deadline)

    def _listening(self, proc, out, deadline):
        """The HTTP address the server printed, or None when it exited first."""
        while True:
            match = LISTENING.search(out.read_text())
            if match:
                return match.group(1)
            if proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError("the server did not report its HTTP address within 10 s")
            time.sleep(0.02)

    def _wait_healthy(self, deadline):
        while True:
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz within 10 s")
            time.sleep(0.05)

    def kill(self):
        """SIGKILL: a crash, nothing flushed or closed by the server itself."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        """SIGTERM: a graceful shutdown, which must finish on its own."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            raise AssertionError("the server did not stop within 15 s of SIGTERM")
        self.proc = None

    def restart(self, graceful=False):
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()

    def logs(self):
        return "\n".join(
            f"--- {path.name}\n{path.read_text()}"
            for path in sorted(self.log_dir.glob("server-*.err"))
            if path.read_text().strip()
        )


@pytest.fixture
def server(tmp_path):
    binary = os.environ.get("TERN_BIN")
    if not binary:
        pytest.fail("TERN_BIN must name the tern binary (scripts/web-check sets it)")
    srv = Server(binary, tmp_path / "data", tmp_path)
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.exit(f"{CHROMIUM} is missing: install the distribution's chromium package", 1)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Kept on the item so that fixtures can tell, at teardown, whether the test failed.
    report = yield
    setattr(item, "report_" + report.when, report)
    return report


class Web:
    """The browser side of one test: its contexts and pages, and their screenshots."""

    DESKTOP = DESKTOP
    PHONE = PHONE

    def __init__(self, browser, server, name):
        self.browser = browser
        self.server = server
        self.name = name
        self.contexts = []
        self.pages = []
        self.errors = []

    def context(self, viewport=DESKTOP, **options):
        ctx = self.browser.new_context(viewport=viewport, **options)
        ctx.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(ctx)
        return ctx

    def page(self, ctx=None, label=None, **options):
        """A new tab at the server's URL: in `ctx`, or in a new context (a new browser profile)."""
        ctx = ctx or self.context(**options)
        page = ctx.new_page()
        label = label or f"page{len(self.pages) + 1}"
        # A confirmation the app asks for is answered yes: the tests act as a user who means it.
        page.on("dialog", lambda dialog: dialog.accept())
        page.on("pageerror", lambda error: self.errors.append(f"{label}: {error}"))
        page.on(
            "console",
            lambda msg: print(f"[{label} console.{msg.type}] {msg.text}")
            if msg.type in ("error", "warning")
            else None,
        )
        self.pages.append((label, page))
        page.goto(self.server.url)
        return page

    def shot(self, page, name):
        """A screenshot named after the test and the moment."""
        page.screenshot(path=SCREENSHOTS / f"{self.name}-{name}.png")

    def doc_shot(self, page, filename):
        """A screenshot the docs show, under a fixed name."""
        page.screenshot(path=SCREENSHOTS / filename)

    def close(self, failed):
        if failed:
            for label, page in self.pages:
                if not page.is_closed():
                    try:
                        self.shot(page, f"failure-{label}")
                    except Exception as error:  # a crashed page must not hide the failure
                        print(f"no screenshot of {label}: {error}")
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def web(browser, server, request):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    w = Web(browser, server, name)
    yield w
    report = getattr(request.node, "report_call", None)
    failed = report is None or report.failed
    w.close(failed)
    if failed:
        logs = server.logs()
        if logs:
            print(f"server stderr:\n{logs}")
    elif w.errors:
        # An uncaught exception in the page is a bug even when the screen looked right.
        pytest.fail("uncaught errors in the page:\n" + "\n".join(w.errors))
