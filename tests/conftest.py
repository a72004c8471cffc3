"""Shared fixtures: a tiny IDX dataset with its own digests, and HTTP servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from servers import start_server

from digitlab.fetch import DatasetFiles, IDXFile
from digitlab.idx import to_idx


@pytest.fixture
def tiny():
    """A 4-file dataset shaped like MNIST (8x8 images), with the spec that describes it."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images": rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, 12, dtype=np.uint8),
        "test-images": rng.integers(0, 256, (5, 8, 8), dtype=np.uint8),
        "test-labels": rng.integers(0, 10, 5, dtype=np.uint8),
    }
    names = {"train-images": "train-images-idx3-ubyte", "train-labels": "train-labels-idx1-ubyte",
             "test-images": "t10k-images-idx3-ubyte", "test-labels": "t10k-labels-idx1-ubyte"}
    spec = DatasetFiles(
        name="tiny",
        files=tuple(IDXFile(k, names[k], hashlib.md5(to_idx(a)).hexdigest())
                    for k, a in arrays.items()),
        npz_keys=(("x_train", "train-images"), ("y_train", "train-labels"),
                  ("x_test", "test-images"), ("y_test", "test-labels")),
        npz_name="tiny.npz", mirrors=(), npz_urls=(), npm_package="tiny-data@1.0.0")
    raw = {names[k]: to_idx(a) for k, a in arrays.items()}
    gz = {f"{n}.gz": gzip.compress(b) for n, b in raw.items()}
    return spec, arrays, raw, gz


class _Handler(BaseHTTPRequestHandler):
    routes: dict  # path -> bytes, or an int status code
    delay: float  # seconds before each answer
    served: list  # the paths asked for, in order

    def do_GET(self):  # noqa: N802 (the http.server API)
        self.served.append(self.path)
        time.sleep(self.delay)
        body = self.routes.get(self.path, 404)
        if isinstance(body, int):
            self.send_error(body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """Start servers on 127.0.0.1: ``serve({"/path": bytes_or_status})`` returns the base URL;
    each answer waits ``delay`` seconds, and the paths asked for go to ``served``."""
    servers = []

    def serve(routes: dict, delay: float = 0.0, served: list | None = None) -> str:
        handler = type("Handler", (_Handler,), {"routes": routes, "delay": delay,
                                                "served": [] if served is None else served})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


CHROMIUM = "/usr/bin/chromium"
# Flags that work headless here (../shared/BROWSER-TESTS.md): no sandbox as root, and no DNS
# lookups or background connections leaving the machine (127.0.0.1 still works).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright. Skipped where Chromium is missing,
    except under CI=true, where a missing browser is a failure."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (./test.sh installs it with apt-get as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server():
    proc, url = start_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)
