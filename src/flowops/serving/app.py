"""The HTTP layer of `flowops serve` (FastAPI): /invocations, /predict, /health, /metrics.

`/invocations` is MLflow's scoring protocol (JSON `dataframe_split`, `dataframe_records`,
`instances` or `inputs`; CSV), answered by MLflow's own parser for any pyfunc. `/predict` takes
an image, for the segmentation template's models.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flowops.serving.follower import AliasFollower, Loaded
from flowops.serving.images import IMAGE_TYPES, BadImage, decode_image, describe


@dataclass(frozen=True)
class Limits:
    """How much `flowops serve` takes on at once, and who may ask."""

    max_body_bytes: int
    max_pixels: int
    max_concurrent: int = 4  # predictions in flight (decoding, predicting); beyond: 503
    workers: int = 2  # threads that decode and predict, off the event loop
    token: str | None = None  # bearer token for /predict and /metrics; /health stays open (probes)
    body_timeout_s: float = 30.0  # a body must arrive whole within this; else 408 (a slow upload holds nothing)

    @property
    def max_reading(self) -> int:
        """Bodies being received at once; beyond: 503. Reading holds memory, not a prediction slot."""
        return 4 * self.max_concurrent


def create_app(follower: AliasFollower, limits: Limits) -> FastAPI:
    """The service. Decoding, inference and encoding run in a bounded thread pool, never on the
    event loop, so /health and /metrics answer at once however busy /predict is; beyond
    `max_concurrent` predictions in flight /predict answers 503 with Retry-After."""
    app = FastAPI(title="flowops serve", description=f"Serving models:/{follower.name}@{follower.alias}")
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="flowops-predict")
    registry = CollectorRegistry()
    requests_total = Counter(
        "flowops_requests_total", "Requests by endpoint and status", ["endpoint", "status"], registry=registry
    )
    latency = Histogram(
        "flowops_predict_seconds",
        "Time to answer /predict",
        registry=registry,
        buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    in_flight_gauge = Gauge("flowops_predictions_in_flight", "Predictions being decoded or run", registry=registry)
    version_gauge = Gauge("flowops_model_version", "Version being served", registry=registry)
    swaps = Gauge("flowops_model_swaps", "Hot swaps since start", registry=registry)
    poll_failing = Gauge("flowops_registry_poll_failing", "1 while the last registry poll failed", registry=registry)
    in_flight = 0  # only the event loop reads and writes it
    reading = 0  # bodies being received (event loop only)

    def error(status: int, message: str, endpoint: str = "predict", headers: dict | None = None) -> JSONResponse:
        requests_total.labels(endpoint, str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def busy(what: str, limit: int, endpoint: str) -> JSONResponse:
        return error(503, f"busy: {what}, the limit is {limit}; retry shortly", endpoint, {"Retry-After": "1"})

    def refused(request: Request, endpoint: str) -> JSONResponse | None:
        """401 unless the request carries the bearer token (when one is set)."""
        if limits.token is None:
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, f"Bearer {limits.token}".encode()):
            return None
        return error(401, "missing or wrong bearer token", endpoint, {"WWW-Authenticate": "Bearer"})

    def answer(loaded: Loaded, body: bytes, format: str) -> Response:
        """Decode, predict and encode one upload (in a pool thread)."""
        adapter = loaded.adapter
        assert adapter is not None  # only image models reach /predict's decoding
        image, full = decode_image(body, limits.max_pixels, loaded.image_size, loaded.preprocess, adapter)
        with loaded.lock:
            mask = np.asarray(loaded.model.predict(image[None]))[0]
        if (mask.shape[1], mask.shape[0]) != full:  # decoded shrunk (as in training): the mask at the sent size
            mask = adapter.resize_mask(mask, *full)
        headers = {"X-Model-Version": loaded.version}
        if format == "png":
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8), mode="L").save(buf, format="PNG")
            return Response(buf.getvalue(), media_type="image/png", headers=headers)
        return JSONResponse(describe(loaded, mask, follower.name, follower.alias), headers=headers)

    def score(loaded: Loaded, body: bytes, content_type: str) -> Response:
        """MLflow's scoring protocol on the loaded pyfunc (in a pool thread)."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import invocations

        try:
            with loaded.lock:
                got = invocations(body, content_type, loaded.model, loaded.model.metadata.get_input_schema())
        except MlflowException as exc:  # the body is not what the model takes: say why, in one line
            raise BadImage(400, " ".join(str(exc.message).split())[:500]) from None
        if got.status != 200:
            raise BadImage(got.status, " ".join(str(got.response).split())[:500])
        return Response(got.response, media_type=got.mimetype, headers={"X-Model-Version": loaded.version})

    async def guarded(request: Request, endpoint: str, work, *args) -> Response:
        """Token, a loaded model, the concurrency limit, the body within its limit; then `work` in the pool."""
        nonlocal in_flight, reading
        start = time.perf_counter()
        denied = refused(request, endpoint)
        if denied is not None:
            return denied
        loaded = follower.current  # this request keeps this model, even if a swap happens meanwhile
        if loaded is None:
            return error(503, "model is loading", endpoint, headers={"Retry-After": "5"})
        if endpoint == "predict" and not loaded.images:
            return error(
                415, f"v{loaded.version} is not an image model: POST its input as JSON to /invocations", endpoint
            )
        # The body first, outside the prediction slots: a slow upload never holds one (#32.19).
        if reading >= limits.max_reading:
            return busy(f"{reading} uploads arriving", limits.max_reading, endpoint)
        reading += 1
        try:
            body_or_error = await (read_image_body(request) if endpoint == "predict" else read_body(request, endpoint))
        finally:
            reading -= 1
        if isinstance(body_or_error, JSONResponse):
            return body_or_error
        if in_flight >= limits.max_concurrent:
            return busy(f"{in_flight} predictions in flight", limits.max_concurrent, endpoint)
        in_flight += 1
        in_flight_gauge.set(in_flight)
        try:
            try:
                response = await asyncio.get_running_loop().run_in_executor(pool, work, loaded, body_or_error, *args)
            except BadImage as exc:
                return error(exc.status, str(exc), endpoint)
        finally:
            in_flight -= 1
            in_flight_gauge.set(in_flight)
        latency.observe(time.perf_counter() - start)
        requests_total.labels(endpoint, "200").inc()
        return response

    @app.post("/predict")
    async def predict(request: Request, format: str = "json"):
        if format not in ("json", "png"):
            return error(400, f"format must be json or png (got {format!r})")
        return await guarded(request, "predict", answer, format)

    @app.post("/invocations")
    async def invocations(request: Request):
        return await guarded(request, "invocations", score, request.headers.get("content-type", "application/json"))

    async def read_body(request: Request, endpoint: str) -> bytes | JSONResponse:
        """The request body, read up to the size limit whatever Content-Length said."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_body_bytes:
            return error(413, f"body is {length} bytes, over the limit of {limits.max_body_bytes}", endpoint)
        from starlette.requests import ClientDisconnect

        parts, size = [], 0
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_body_bytes:
                        return error(413, f"body is over the limit of {limits.max_body_bytes} bytes", endpoint)
                    parts.append(chunk)
        except TimeoutError:
            return error(
                408, f"the body did not arrive within {limits.body_timeout_s:g} s ({size} bytes came)", endpoint
            )
        except ClientDisconnect:  # the client went away mid-upload: nobody to answer, nothing to log
            return error(400, "the client disconnected before the body arrived", endpoint)
        return b"".join(parts)

    async def read_image_body(request: Request) -> bytes | JSONResponse:
        """The uploaded image's bytes (raw body or the form's file part), within the size limit."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await read_body(request, "predict")
        if isinstance(body, JSONResponse):
            return body
        if content_type == "multipart/form-data":
            from starlette.requests import Request as StarletteRequest

            form = await StarletteRequest(request.scope, _replay(body)).form()
            upload = next((v for v in form.values() if hasattr(v, "read")), None)
            if upload is None:
                return error(400, "multipart body has no file part")
            return await upload.read()
        if content_type not in IMAGE_TYPES:
            return error(
                415, f"content type {content_type or 'missing'}: send image/jpeg, image/png or multipart/form-data"
            )
        return body

    @app.get("/health")
    async def health():  # on the event loop: it never waits behind a prediction
        loaded = follower.current
        body = {
            "model": follower.name,
            "alias": follower.alias,
            "registry_poll_error": follower.poll_error,
            "loading_version": follower.loading,  # a swap under way: the new version is being loaded
        }
        if loaded is None:
            requests_total.labels("health", "503").inc()
            return JSONResponse({**body, "status": "loading"}, status_code=503)
        requests_total.labels("health", "200").inc()
        return {
            **body,
            "status": "ok",
            "version": loaded.version,
            "run_id": loaded.run_id,
            "git_commit": loaded.git_commit,
            "loaded_at": loaded.loaded_at,
            "swaps": follower.swaps,
            "predictions_in_flight": in_flight,
            "uploads_arriving": reading,
        }

    @app.get("/metrics")
    async def metrics(request: Request):
        denied = refused(request, "metrics")
        if denied is not None:
            return denied
        loaded = follower.current
        version_gauge.set(float(loaded.version) if loaded else 0)
        swaps.set(follower.swaps)
        poll_failing.set(1 if follower.poll_error else 0)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _replay(body: bytes):
    """An ASGI receive() that hands back a body already read (to parse it as a form)."""
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
