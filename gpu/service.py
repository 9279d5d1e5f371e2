"""The HTTP API (Starlette) over the engine.

  GET  /health                        device, models (and whether their weights are random), memory
  GET  /metrics[?format=prometheus]   requests, latency percentiles, queue depth, in flight
  POST /v1/remove-background          body: image bytes; ?output=rgba|mask → PNG
  POST /v1/remove-background/batch    {"images": [b64…], "output": "rgba"|"mask"} → PNGs (b64)
  POST /v1/segment                    {"image": b64, "points", "labels", "box", "multimask"} → masks
  POST /v1/segment/batch              {"items": [{…as /v1/segment…}]} → one result per item

Bad input answers 4xx with {"error", "type"} and the service keeps serving; model work runs off
the event loop (`asyncio.to_thread`) one batch at a time, behind a gate whose waiters are the
queue depth reported by /metrics. Each request is timed by stage (read, decode, queue, model,
encode); requests over the slow threshold are logged with those timings (`gpu.metrics`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gpu.errors import BadInputError, GpuServiceError, PayloadTooLargeError
from gpu.imaging import Limits, b64, cutout_rgba, decode_b64_image, decode_image, encode_png
from gpu.metrics import Metrics, request_stages, stage
from gpu.models.sam2 import Prompt

Handler = Callable[[Request, "ServiceState"], Awaitable[tuple[Response, int]]]


@dataclass
class ServiceState:
    engine: Any
    limits: Limits = field(default_factory=Limits)
    metrics: Metrics = field(default_factory=Metrics)
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run engine work in a thread, one batch at a time; waiters count as queue depth."""
        self.metrics.enqueue()
        queued = True
        try:
            with stage("queue"):
                await self.gate.acquire()
            try:
                self.metrics.dequeue()
                queued = False
                self.metrics.in_flight += 1
                try:
                    with stage("model"):
                        return await asyncio.to_thread(fn, *args)
                finally:
                    self.metrics.in_flight -= 1
            finally:
                self.gate.release()
        finally:
            if queued:
                self.metrics.dequeue()


def error_response(exc: Exception) -> JSONResponse:
    status = exc.http_status if isinstance(exc, GpuServiceError) else 500
    message = str(exc) if isinstance(exc, GpuServiceError) else f"internal error: {exc!r}"
    return JSONResponse({"error": message, "type": type(exc).__name__}, status_code=status)


def endpoint(route: str, state: ServiceState, handler: Handler) -> Any:
    """Wrap a handler: errors become JSON 4xx/5xx answers, every request is measured."""

    async def wrapped(request: Request) -> Response:
        start = time.perf_counter()
        images = 0
        with request_stages() as stages:
            try:
                response, images = await handler(request, state)
            except Exception as exc:  # every failure must answer and leave the service serving
                response = error_response(exc)
        elapsed = time.perf_counter() - start
        state.metrics.observe(route, response.status_code, elapsed, images)
        state.metrics.slow.check(route, response.status_code, elapsed * 1000, stages, images)
        return response

    return wrapped


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLargeError(f"request body is {len(body)} bytes; the limit is {limit} bytes")
    return body


async def read_json(request: Request, state: ServiceState) -> dict[str, Any]:
    body = await read_body(request, state.limits.max_body_bytes * 2)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInputError("body must be a JSON object")
    return data


def output_mode(value: Any) -> str:
    mode = value or "rgba"
    if mode not in ("rgba", "mask"):
        raise BadInputError(f"output must be 'rgba' or 'mask', got {mode!r}")
    return str(mode)


def render_cutout(image: np.ndarray, mask: np.ndarray, mode: str) -> bytes:
    return encode_png(cutout_rgba(image, mask) if mode == "rgba" else mask)


async def health(request: Request, state: ServiceState) -> tuple[Response, int]:
    return JSONResponse({"status": "ok", **state.engine.describe()}), 0


async def metrics(request: Request, state: ServiceState) -> tuple[Response, int]:
    if request.query_params.get("format") == "prometheus":
        return PlainTextResponse(state.metrics.prometheus()), 0
    return JSONResponse(state.metrics.snapshot()), 0


async def remove_background(request: Request, state: ServiceState) -> tuple[Response, int]:
    mode = output_mode(request.query_params.get("output"))
    with stage("read"):
        body = await read_body(request, state.limits.max_body_bytes)
    with stage("decode"):
        image = decode_image(body, state.limits)
    [mask] = await state.run(state.engine.remove_background, [image])
    with stage("encode"):
        png = render_cutout(image, mask, mode)
    return Response(png, media_type="image/png"), 1


def batch_list(data: dict[str, Any], key: str, limits: Limits) -> list[Any]:
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise BadInputError(f"'{key}' must be a non-empty list")
    if len(items) > limits.max_batch:
        raise PayloadTooLargeError(f"{len(items)} {key}; the limit is {limits.max_batch} a batch")
    return items


async def remove_background_batch(request: Request, state: ServiceState) -> tuple[Response, int]:
    with stage("read"):
        data = await read_json(request, state)
    mode = output_mode(data.get("output"))
    raw = batch_list(data, "images", state.limits)
    with stage("decode"):
        images = [decode_b64_image(v, state.limits, f"images[{i}]") for i, v in enumerate(raw)]
    start = time.perf_counter()
    masks = await state.run(state.engine.remove_background, images)
    with stage("encode"):
        results = [
            {"png": b64(render_cutout(img, m, mode)), "width": img.shape[1], "height": img.shape[0]}
            for img, m in zip(images, masks, strict=True)
        ]
    elapsed = round((time.perf_counter() - start) * 1000, 1)
    return JSONResponse({"results": results, "output": mode, "model_ms": elapsed}), len(images)


def parse_segment_item(item: Any, limits: Limits, what: str) -> tuple[np.ndarray, Prompt]:
    if not isinstance(item, dict):
        raise BadInputError(f"{what} must be a JSON object with 'image' and a prompt")
    image = decode_b64_image(item.get("image"), limits, f"{what}.image")
    return image, Prompt.parse(item, width=image.shape[1], height=image.shape[0])


def segment_result(result: dict[str, Any]) -> dict[str, Any]:
    masks = result["masks"]
    return {
        "masks": [b64(encode_png((m * 255).astype(np.uint8))) for m in masks],
        "scores": [round(float(s), 6) for s in result["scores"]],
        "width": int(masks.shape[2]),
        "height": int(masks.shape[1]),
    }


async def segment(request: Request, state: ServiceState) -> tuple[Response, int]:
    with stage("read"):
        data = await read_json(request, state)
    with stage("decode"):
        item = parse_segment_item(data, state.limits, "body")
    [result] = await state.run(state.engine.segment, [item])
    with stage("encode"):
        answer = segment_result(result)
    return JSONResponse(answer), 1


async def segment_batch(request: Request, state: ServiceState) -> tuple[Response, int]:
    with stage("read"):
        data = await read_json(request, state)
    raw = batch_list(data, "items", state.limits)
    with stage("decode"):
        items = [parse_segment_item(it, state.limits, f"items[{i}]") for i, it in enumerate(raw)]
    results = await state.run(state.engine.segment, items)
    with stage("encode"):
        answers = [segment_result(r) for r in results]
    return JSONResponse({"results": answers}), len(items)


def create_app(engine: Any, limits: Limits | None = None, slow_ms: float = 2000.0) -> Starlette:
    state = ServiceState(engine, limits or Limits())
    state.metrics.slow.threshold_ms = slow_ms
    table: list[tuple[str, Handler, list[str]]] = [
        ("/health", health, ["GET"]),
        ("/metrics", metrics, ["GET"]),
        ("/v1/remove-background", remove_background, ["POST"]),
        ("/v1/remove-background/batch", remove_background_batch, ["POST"]),
        ("/v1/segment", segment, ["POST"]),
        ("/v1/segment/batch", segment_batch, ["POST"]),
    ]
    routes = [Route(path, endpoint(path, state, h), methods=m) for path, h, m in table]
    app = Starlette(routes=routes)
    app.state.service = state
    return app
