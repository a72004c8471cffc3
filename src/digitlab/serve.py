"""The service: a FastAPI app around a :class:`~digitlab.recognize.Recognizer`.

    POST /v1/predict   one digit: multipart file, raw image bytes, or JSON
                       {"image": base64 or data URL} / {"pixels": 28x28 array, MNIST-ready}
    POST /v1/read      a whole number (multipart, raw bytes, or JSON {"image": ...})
    GET  /v1/models    the model being served, and the limits
    GET  /healthz      liveness
    GET  /             the draw-a-digit page (self-contained: no CDN, works offline)
    GET  /docs         OpenAPI documentation (Swagger UI; /redoc too), its scripts served here

Every error is JSON ``{"error": "one-line reason"}`` with a 4xx status; the server stays up
whatever it is sent. Images go through the one reading path; a 28x28 ``pixels`` array is
taken as MNIST-ready (white digit on black, 0-255 or 0-1) and only scaled. The model is
loaded once, before the app is made; decoding, preparing and predicting run in worker
threads, off the event loop, at most ``ServiceConfig.compute_threads`` at a time: the work is
CPU-bound, so more threads than cores only queue on each other (``--workers`` adds processes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import json
import os
from dataclasses import dataclass
from importlib import resources

import anyio.to_thread
import numpy as np
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from .images import ImageRejected, encode_png
from .preprocess import BlankImage
from .recognize import Answer, Recognizer

__all__ = ["ServiceConfig", "create_app"]


@dataclass(frozen=True)
class ServiceConfig:
    """Deployment settings: body size limit, CORS origins (none by default), an API key."""

    max_upload_bytes: int = 10 * 2**20
    cors_origins: tuple[str, ...] = ()
    api_key: str | None = None
    body_timeout: float = 30.0  # seconds a request body may pause before it is refused
    compute_threads: int = 1  # images worked on at once in one process


class _Refused(Exception):
    """A request refused with a status code and a one-line reason."""

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason


# A body must keep coming at this many bytes a second on average once its first --body-timeout
# seconds are used up, as Apache's RequestReadTimeout has it by default (body=20,MinRate=500):
# a slow phone upload passes, a client trickling a byte at a time to hold a worker does not.
MIN_BODY_RATE = 500


class _LimitBody:
    """ASGI middleware: refuse request bodies over ``limit`` bytes, whether declared up front
    (Content-Length) or streamed, before the app buffers them; and bodies that stall for
    ``timeout`` seconds, or take longer than ``timeout`` seconds plus one more for every
    ``MIN_BODY_RATE`` bytes (a slow client must not hold a worker)."""

    def __init__(self, app, limit: int, timeout: float = 30.0):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse({"error": f"request body over the limit of {self.limit:,} "
                                     "bytes"}, status_code=413)
            return await response(scope, receive, send)
        seen, complete, start = 0, False, None
        clock = asyncio.get_running_loop().time

        async def limited():
            nonlocal seen, complete, start
            if complete:  # after the body, receive() waits for a disconnect: no deadline
                return await receive()
            start = clock() if start is None else start
            left = start + self.timeout + seen / MIN_BODY_RATE - clock()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), min(self.timeout, left))
            except asyncio.TimeoutError:
                why = (f"nothing for {self.timeout:g} s" if seen == 0 or left > self.timeout else
                       f"under {MIN_BODY_RATE} bytes a second after {self.timeout:g} s")
                raise _Refused(408, f"request body too slow ({why})") from None
            seen += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if seen > self.limit:
                raise _Refused(413, f"request body over the limit of {self.limit:,} bytes")
            return message

        return await self.app(scope, limited, send)


def _png_data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


def _answer(a: Answer) -> dict:
    return {**a.to_dict(), "input": _png_data_url(a.image)}


def _decode_base64(text: object) -> bytes:
    if not isinstance(text, str):
        raise _Refused(400, '"image" must be a base64 string or a data URL')
    if text.startswith("data:"):
        _, comma, text = text.partition(",")
        if not comma:
            raise _Refused(400, '"image" is a data URL without its data (no comma)')
    try:  # line breaks, as base64 tools write every 76 characters, are allowed
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(400, '"image" is not valid base64') from None


def _pixels(value: object) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged
        raise _Refused(400, '"pixels" must be a 28x28 array of numbers') from None
    if array.dtype.kind not in "biuf":  # strings, nulls, objects: not numbers
        raise _Refused(400, '"pixels" must be a 28x28 array of numbers')
    array = array.astype(np.float32)
    if array.shape != (28, 28):
        raise _Refused(400, f'"pixels" must be a 28x28 array, got shape {list(array.shape)}')
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise _Refused(400, '"pixels" values must be between 0 and 255 (or 0 and 1)')
    return array


async def _payload(request: Request) -> tuple[str, object]:
    """("image", encoded bytes) or ("pixels", (28, 28) array) from any accepted body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form()
        except _Refused:
            raise
        except Exception as exc:  # the multipart parser's own errors, whatever their class
            raise _Refused(400, f"malformed multipart body ({type(exc).__name__})") from None
        # an optional file field a form left empty is a part with no name and no bytes
        files = [v for _, v in form.multi_items() if hasattr(v, "read") and (v.filename or v.size)]
        if not files:
            raise _Refused(400, 'multipart body has no file (send it as field "file")')
        if len(files) > 1:
            raise _Refused(400, f"multipart body has {len(files)} files: send one image per "
                           "request")
        return "image", await files[0].read()
    body = await request.body()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Refused(400, f"malformed JSON ({exc.msg if hasattr(exc, 'msg') else exc})") \
                from None
        except (RecursionError, ValueError):  # nested too deep; an integer of 4,300+ digits
            raise _Refused(400, "JSON nested too deep or with a number too long") from None
        if not isinstance(data, dict) or not ({"image", "pixels"} & data.keys()):
            raise _Refused(400, 'JSON must be an object with "image" (base64) or "pixels" '
                           "(28x28)")
        if {"image", "pixels"} <= data.keys():
            raise _Refused(400, 'JSON has both "image" and "pixels": send one')
        if "pixels" in data:
            return "pixels", _pixels(data["pixels"])
        return "image", _decode_base64(data["image"])
    if not body:
        raise _Refused(400, "empty request: send an image (raw body, multipart or JSON)")
    return "image", body


def _body_schema(pixels: bool) -> dict:
    """The request bodies /docs offers (the routes read the raw request themselves, so
    FastAPI cannot infer them): a file upload, raw image bytes, or JSON."""
    json_fields = {"image": {"type": "string", "description": "base64, or a data URL"}}
    if pixels:
        json_fields["pixels"] = {"type": "array", "items": {"type": "array", "items": {
            "type": "number"}}, "description": "28x28, white digit on black, 0-255 or 0-1"}
    errors = {str(code): {"description": reason, "content": {"application/json": {
        "schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
        for code, reason in ((400, "not an image, malformed body"), (401, "wrong API key"),
                             (408, "the body stalled"), (413, "over the upload limit"),
                             (422, "blank image"))}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "object", "properties": json_fields}}}},
        "responses": errors}


def create_app(recognizer: Recognizer, config: ServiceConfig = ServiceConfig()) -> FastAPI:
    """The service around ``recognizer`` (already loaded: start-up does no other work)."""
    # /docs and /redoc with their scripts served from the package, not a CDN: they work offline
    app = FastAPIOffline(title="digitlab", version="1",
                         description="Handwritten digit recognition: one digit, or a whole "
                                     "number.")
    page = resources.files("digitlab").joinpath("_web", "index.html").read_text("utf-8")
    meta = recognizer.loaded

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused):
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    @app.exception_handler(HTTPException)  # the router's own: no such path, wrong method
    async def not_routed(request: Request, exc: HTTPException):
        return JSONResponse({"error": f"{str(exc.detail).lower()}: {request.method} "
                                      f"{request.url.path}"},
                            status_code=exc.status_code, headers=exc.headers)

    def check_key(request: Request) -> None:
        if config.api_key:
            given = request.headers.get("x-api-key") or request.headers.get(
                "authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), config.api_key.encode()):
                raise _Refused(401, "missing or wrong API key (X-API-Key header)")

    api = [Depends(check_key)]

    limiter: list[CapacityLimiter] = []  # made on first use, inside the event loop

    async def run(function, *args):
        if not limiter:
            limiter.append(CapacityLimiter(config.compute_threads))
        try:
            return await anyio.to_thread.run_sync(functools.partial(function, *args),
                                                  limiter=limiter[0])
        except BlankImage as exc:
            raise _Refused(422, str(exc)) from None
        except ImageRejected as exc:
            reason = str(exc)
            raise _Refused(413 if "over the limit" in reason or "bomb" in reason else 400,
                           reason) from None

    @app.post("/v1/predict", summary="The digit in an image, or in a 28x28 array",
              dependencies=api, openapi_extra=_body_schema(pixels=True))
    async def predict(request: Request):
        kind, value = await _payload(request)
        if kind == "pixels":
            return _answer(await run(recognizer.predict_mnist, value))
        return _answer(await run(recognizer.predict, value))

    @app.post("/v1/read", summary="The number written in an image", dependencies=api,
              openapi_extra=_body_schema(pixels=False))
    async def read(request: Request):
        kind, value = await _payload(request)
        if kind == "pixels":
            raise _Refused(400, "a 28x28 array holds one digit: use /v1/predict")
        reading = await run(recognizer.read, value)
        return {"number": reading.number, "low_confidence": reading.low_confidence,
                "digits": [{**_answer(d), "touching": d.touching} for d in reading.digits]}

    @app.get("/v1/models", summary="The model served, and the limits on inputs",
             dependencies=api)
    async def models():
        limits = recognizer.limits
        return {"models": [{
            "name": meta.path.stem, "arch": meta.config.arch,
            "input_shape": list(meta.config.input_shape),
            "parameters": recognizer.parameters,
            "preset": meta.meta.get("preset"), "test_accuracy": meta.meta.get("test_accuracy"),
            "default": True}],
            "limits": {"max_upload_bytes": config.max_upload_bytes,
                       "max_pixels": limits.max_pixels, "min_side": limits.min_side,
                       "min_confidence": recognizer.min_confidence}}

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok", "process": os.getpid()}  # which of several processes

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    for route in [r for r in app.routes if isinstance(r, APIRoute) and "GET" in r.methods]:
        app.add_api_route(route.path, route.endpoint, methods=["HEAD"],  # as HTTP has it
                          dependencies=route.dependencies, response_class=route.response_class,
                          include_in_schema=False)

    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(_LimitBody, limit=config.max_upload_bytes, timeout=config.body_timeout)
    return app

