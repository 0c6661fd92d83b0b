"""The HTTP layer of `flowops serve` (FastAPI): /predict, /health, /metrics."""

from __future__ import annotations

import io
import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flowops.preprocess import resize_mask
from flowops.serving.follower import AliasFollower
from flowops.serving.images import IMAGE_TYPES, BadImage, decode_image, describe


def create_app(follower: AliasFollower, max_body_bytes: int, max_pixels: int) -> FastAPI:
    app = FastAPI(title="flowops serve", description=f"Segmentation with models:/{follower.name}@{follower.alias}")
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
    version_gauge = Gauge("flowops_model_version", "Version being served", registry=registry)
    swaps = Gauge("flowops_model_swaps", "Hot swaps since start", registry=registry)
    poll_failing = Gauge("flowops_registry_poll_failing", "1 while the last registry poll failed", registry=registry)

    def error(status: int, message: str, endpoint: str = "predict") -> JSONResponse:
        requests_total.labels(endpoint, str(status)).inc()
        return JSONResponse({"error": message}, status_code=status)

    @app.post("/predict")
    async def predict(request: Request, format: str = "json"):
        start = time.perf_counter()
        loaded = follower.current  # this request keeps this model, even if a swap happens meanwhile
        if loaded is None:
            return error(503, "model is loading")
        if format not in ("json", "png"):
            return error(400, f"format must be json or png (got {format!r})")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body_bytes:
            return error(413, f"body is {length} bytes, over the limit of {max_body_bytes}")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = b""
        async for chunk in request.stream():  # read at most the limit, whatever Content-Length said
            body += chunk
            if len(body) > max_body_bytes:
                return error(413, f"body is over the limit of {max_body_bytes} bytes")
        if content_type == "multipart/form-data":
            from starlette.requests import Request as StarletteRequest

            form = await StarletteRequest(request.scope, _replay(body)).form()
            upload = next((v for v in form.values() if hasattr(v, "read")), None)
            if upload is None:
                return error(400, "multipart body has no file part")
            body = await upload.read()
        elif content_type not in IMAGE_TYPES:
            return error(
                415, f"content type {content_type or 'missing'}: send image/jpeg, image/png or multipart/form-data"
            )
        try:
            image, full = decode_image(body, max_pixels, loaded.image_size, loaded.preprocess)
        except BadImage as exc:
            return error(exc.status, str(exc))
        with loaded.lock:
            mask = np.asarray(loaded.model.predict(image[None]))[0]
        if (mask.shape[1], mask.shape[0]) != full:  # decoded shrunk (as in training): the mask at the sent size
            mask = resize_mask(mask, *full)
        latency.observe(time.perf_counter() - start)
        requests_total.labels("predict", "200").inc()
        headers = {"X-Model-Version": loaded.version}
        if format == "png":
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8), mode="L").save(buf, format="PNG")
            return Response(buf.getvalue(), media_type="image/png", headers=headers)
        return JSONResponse(describe(loaded, mask, follower.name, follower.alias), headers=headers)

    @app.get("/health")
    def health():
        loaded = follower.current
        body = {"model": follower.name, "alias": follower.alias, "registry_poll_error": follower.poll_error}
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
        }

    @app.get("/metrics")
    def metrics():
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
