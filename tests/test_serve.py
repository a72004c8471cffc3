"""The REST API against the app itself (TestClient), each error case, and a real uvicorn."""

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from digits import on_paper, png
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.preprocess import prepare_digit
from digitlab.recognize import Recognizer
from digitlab.serve import ServiceConfig, create_app


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer.load()


@pytest.fixture(scope="module")
def client(recognizer):
    return TestClient(create_app(recognizer, ServiceConfig(max_upload_bytes=200_000)))


SEVEN = png(on_paper([7]))


def check_answer(body: dict, digit: int):
    assert body["digit"] == digit and len(body["probabilities"]) == 10
    assert set(body) >= {"confidence", "low_confidence", "input"}
    assert body["input"].startswith("data:image/png;base64,")
    seen = Image.open(io.BytesIO(base64.b64decode(body["input"].split(",")[1])))
    assert seen.size == (28, 28)


def test_health_models_docs_page(client):
    assert client.get("/healthz").json() == {"status": "ok", "process": os.getpid()}
    models = client.get("/v1/models").json()
    assert models["models"][0]["arch"] == "digitnet"
    assert models["limits"]["max_upload_bytes"] == 200_000
    assert client.get("/docs").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http://" not in page.text and "https://" not in page.text, "no CDN, works offline"


def test_predict_raw_multipart_base64_dataurl(client):
    check_answer(client.post("/v1/predict", content=SEVEN,
                             headers={"content-type": "image/png"}).json(), 7)
    check_answer(client.post("/v1/predict", content=SEVEN).json(), 7)  # no content type
    check_answer(client.post("/v1/predict", files={"file": ("x.png", SEVEN)}).json(), 7)
    b64 = base64.b64encode(SEVEN).decode()
    check_answer(client.post("/v1/predict", json={"image": b64}).json(), 7)
    check_answer(client.post("/v1/predict",
                             json={"image": "data:image/png;base64," + b64}).json(), 7)
    wrapped = base64.encodebytes(SEVEN).decode()  # a line break every 76 characters
    check_answer(client.post("/v1/predict", json={"image": wrapped}).json(), 7)
    for path in ("/", "/healthz", "/v1/models"):  # HEAD wherever GET
        assert client.head(path).status_code == 200


def test_a_forms_empty_optional_file_field_is_no_second_file(client):
    files = [("file", ("seven.png", SEVEN, "image/png")),
             ("extra", ("", b"", "application/octet-stream"))]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 200 and response.json()["digit"] == 7, response.text


def test_predict_an_mnist_ready_array(client):
    grey = np.asarray(on_paper([4]).convert("L"), np.float32) / 255
    seen = prepare_digit(grey).image
    for pixels in (seen.tolist(), (seen * 255).round().tolist()):
        check_answer(client.post("/v1/predict", json={"pixels": pixels}).json(), 4)


def test_read_a_number(client):
    body = client.post("/v1/read", content=png(on_paper([2, 0, 4], k=2))).json()
    assert body["number"] == "204" and len(body["digits"]) == 3
    assert all(len(d["box"]) == 4 and d["input"].startswith("data:") for d in body["digits"])


@pytest.mark.parametrize("kwargs, status, reason", [
    ({"content": b"not an image"}, 400, "not an image"),
    ({"content": png(Image.new("L", (100, 100), 255))}, 422, "blank"),
    ({"content": b"x" * 200_001}, 413, "over the limit"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
     "malformed JSON"),
    ({"json": {"picture": "abc"}}, 400, '"image"'),
    ({"json": [1, 2, 3]}, 400, "object"),
    ({"json": {"image": "%%%not base64"}}, 400, "not valid base64"),
    ({"json": {"image": 42}}, 400, "base64 string"),
    ({"json": {"pixels": [[0] * 28] * 27}}, 400, "28x28"),
    ({"json": {"pixels": [[300] * 28] * 28}}, 400, "between 0 and 255"),
    ({"json": {"pixels": "abc"}}, 400, "28x28"),
    ({"json": {"pixels": [["12"] * 28] * 28}}, 400, "array of numbers"),
    ({"json": {"pixels": [[None] * 28] * 28}}, 400, "array of numbers"),
    ({"json": {"image": "data:image/png;base64"}}, 400, "no comma"),
    ({"content": b'{"pixels": ' + b"[" * 100_000, "headers": {"content-type":
                                                             "application/json"}}, 400, "JSON"),
    ({"content": b'{"pixels": ' + b"9" * 5000 + b"}", "headers": {
        "content-type": "application/json"}}, 400, "JSON"),
    ({"json": {"pixels": [[0] * 28] * 28}}, 422, "blank"),
    ({"json": {"pixels": [[1.0] * 28] * 28}}, 422, "blank"),
    ({"files": {"note": (None, "text only")}}, 400, "no file"),
    ({"files": [("file", ("a.png", b"x", "image/png")), ("file", ("b.png", b"y", "image/png"))]},
     400, "2 files"),
    ({"json": {"image": "aGk=", "pixels": [[0] * 28] * 28}}, 400, "both"),
    ({"content": b""}, 400, "empty request"),
    ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400, "multipart"),
])
def test_errors_are_json_with_a_reason(client, kwargs, status, reason):
    response = client.post("/v1/predict", **kwargs)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]
    assert client.get("/healthz").status_code == 200, "the server stays up"


def test_bombs_and_pixel_limits(client):
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\0\0\0\0IEND\xaeB`\x82")
    response = client.post("/v1/predict", content=bomb)
    assert response.status_code == 413 and "bomb" in response.json()["error"]


def test_streamed_body_over_the_limit(client):
    def chunks():
        for _ in range(30):
            yield b"x" * 10_000
    response = client.post("/v1/predict", content=chunks())
    assert response.status_code == 413


def test_unknown_paths_and_methods_answer_in_the_same_format(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not found: GET /v1/nothing"}
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"error": "method not allowed: GET /v1/predict"}


def test_read_refuses_pixels(client):
    for pixels in ([[0] * 14 + [255] * 14] * 28, [[0] * 28] * 28):
        response = client.post("/v1/read", json={"pixels": pixels})
        assert response.status_code == 400 and "one digit" in response.json()["error"]


def test_api_key_and_cors(recognizer):
    app = create_app(recognizer, ServiceConfig(api_key="s3cret",
                                               cors_origins=("https://example.org",)))
    c = TestClient(app)
    assert c.post("/v1/predict", content=SEVEN).status_code == 401
    assert c.post("/v1/predict", content=SEVEN, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.post("/v1/predict", content=SEVEN, headers={"X-API-Key": "s3cret"}).json()[
        "digit"] == 7
    assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
    pre = c.options("/v1/predict", headers={"Origin": "https://example.org",
                                            "Access-Control-Request-Method": "POST"})
    assert pre.headers["access-control-allow-origin"] == "https://example.org"
    plain = TestClient(create_app(recognizer))
    response = plain.post("/v1/predict", content=SEVEN, headers={"Origin": "https://evil.test"})
    assert "access-control-allow-origin" not in response.headers, "CORS is off by default"


def test_real_server(server):
    request = urllib.request.Request(server + "/v1/predict", data=SEVEN,
                                     headers={"Content-Type": "image/png"})
    body = json.loads(urllib.request.urlopen(request, timeout=10).read())
    assert body["digit"] == 7
    bad = urllib.request.Request(server + "/v1/predict", data=b"junk")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=10)
    assert err.value.code == 400 and "not an image" in json.loads(err.value.read())["error"]


def test_slow_body_is_refused_and_the_server_stays_up(tmp_path):
    """A client that sends half a body and stalls gets 408; others are still served."""
    import socket

    from servers import start_server
    proc, url = start_server("--body-timeout", "1")
    port = int(url.rsplit(":", 1)[1])
    try:
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 100000\r\n\r\n" + SEVEN[:100])
        fast = urllib.request.Request(url + "/v1/predict", data=SEVEN,
                                      headers={"Content-Type": "image/png"})
        assert json.loads(urllib.request.urlopen(fast, timeout=10).read())["digit"] == 7
        slow.settimeout(10)
        answer = b""
        while b"too slow" not in answer:  # headers and body may come in separate segments
            piece = slow.recv(4096)
            if not piece:
                break
            answer += piece
        assert answer.startswith(b"HTTP/1.1 408") and b"too slow" in answer, answer
        slow.close()
        # a byte every 0.1 s never stalls for the 1 s, but is far under 500 bytes a second
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                        b"Content-Length: 1000\r\n\r\n")
        trickle.settimeout(0.1)
        answer, started = b"", time.monotonic()
        for byte in SEVEN[:100]:
            try:
                trickle.sendall(bytes([byte]))
                answer += trickle.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # the server closed the connection after answering
                break
            if b"too slow" in answer:
                break
        assert answer.startswith(b"HTTP/1.1 408") and b"500 bytes a second" in answer, answer
        assert time.monotonic() - started < 5
        trickle.close()
        assert urllib.request.urlopen(url + "/healthz", timeout=5).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_several_processes_share_the_port_and_stop_cleanly():
    """--workers 2: each process listens on its own SO_REUSEPORT socket, so keep-alive
    clients are spread over both (uvicorn's shared socket handed them all to one)."""
    import http.client
    import signal

    from servers import start_server
    proc, url = start_server("--workers", "2")
    try:
        port = int(url.rsplit(":", 1)[1])
        served = set()
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                       for _ in range(16)]
        for c in connections:  # keep-alive: each connection stays with one process
            for _ in range(2):
                c.request("GET", "/healthz")
                served.add(json.loads(c.getresponse().read())["process"])
        assert len(served) == 2, served
        again = subprocess.run([str(Path(sys.executable).parent / "digitlab"), "serve",
                                "--port", str(port), "--workers", "2"],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "Address already in use" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_refuses_a_port_it_cannot_listen_on_in_one_line():
    import socket
    digitlab = str(Path(sys.executable).parent / "digitlab")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        for extra in ([], ["--workers", "2"]):
            done = subprocess.run([digitlab, "serve", "--port", str(port), *extra],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 1, done.stderr
            assert done.stderr.strip().splitlines() == [
                f"digitlab: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    for bad in (["--port", "0"], ["--port", "65536"], ["--body-timeout", "0"]):
        done = subprocess.run([digitlab, "serve", *bad], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_listening_sockets_are_tcp_and_shareable():
    """Two processes' sockets can share a port, and what they accept has Nagle off (asyncio
    sets TCP_NODELAY only on sockets that name IPPROTO_TCP)."""
    import asyncio
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from servers import free_port

    from digitlab._processes import listening_socket
    port = free_port()
    first, second = listening_socket("127.0.0.1", port), listening_socket("127.0.0.1", port)
    try:
        assert first.proto == socket.IPPROTO_TCP

        async def accepted_nodelay() -> int:
            seen = asyncio.get_running_loop().create_future()

            async def on_client(reader, writer):
                sock = writer.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                writer.close()

            server = await asyncio.start_server(on_client, sock=first)
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(seen, 10)
            finally:
                writer.close()
                server.close()

        second.close()  # every connection to the port now goes to the first socket
        # in a thread of its own: another test's browser may have left a loop running here
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(asyncio.run, accepted_nodelay()).result(timeout=30) != 0
    finally:
        first.close()
        second.close()


def test_the_api_docs_describe_what_to_send(client):
    """/docs can send an image: both POST endpoints declare their bodies and errors."""
    spec = client.get("/openapi.json").json()
    for path in ("/v1/predict", "/v1/read"):
        operation = spec["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == \
            "binary"
        assert {"image/png", "application/json"} <= content.keys()
        assert {"400", "413", "422"} <= operation["responses"].keys()
    assert "pixels" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]
    assert client.get("/docs").status_code == 200
