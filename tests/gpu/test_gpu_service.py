"""Every endpoint of the real HTTP server (uvicorn on 127.0.0.1, a free port), good and bad input.

The service must answer bad input with a 4xx and a message, and keep serving: each bad-input
test ends with a good request, and metrics must count all of it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpu.workload import synthetic_image

ROOT = Path(__file__).resolve().parents[2]


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG")
    return buf.getvalue()


def b64png(array: np.ndarray) -> str:
    return base64.b64encode(png_bytes(array)).decode()


def decode_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


IMAGE = synthetic_image(200, seed=1)[:, :160]  # 200 high, 160 wide: not square on purpose


def test_health_reports_device_models_memory_and_random_weights(server) -> None:
    status, body = server.get_json("/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["device"]["type"] in ("cpu", "cuda")
    assert body["random_weights"] is True
    assert set(body["models"]) == {"birefnet", "sam2"}
    assert body["models"]["birefnet"]["weights"].startswith("random (explicitly requested")
    assert body["models"]["sam2"]["config"].endswith("sam2.1_hiera_t.yaml")
    assert body["memory"]["host_rss_mb"] > 100
    assert body["pool"]["lanes"] == 2


def test_remove_background_returns_rgba_png_or_mask(server) -> None:
    status, headers, data = server.request("POST", "/v1/remove-background", png_bytes(IMAGE))
    assert status == 200 and headers["content-type"] == "image/png"
    rgba = decode_png(data)
    assert rgba.mode == "RGBA" and rgba.size == (160, 200)
    assert np.array_equal(np.asarray(rgba)[..., :3], IMAGE)  # colour kept, alpha = mask
    status, _, data = server.request("POST", "/v1/remove-background?output=mask", jpeg_bytes(IMAGE))
    mask = decode_png(data)
    assert status == 200 and mask.mode == "L" and mask.size == (160, 200)


def test_remove_background_batch(server) -> None:
    images = [IMAGE, synthetic_image(96, seed=2)]
    status, body = server.post_json(
        "/v1/remove-background/batch", {"images": [b64png(i) for i in images], "output": "mask"}
    )
    assert status == 200
    assert [(r["width"], r["height"]) for r in body["results"]] == [(160, 200), (96, 96)]
    masks = [decode_png(base64.b64decode(r["png"])) for r in body["results"]]
    assert [m.size for m in masks] == [(160, 200), (96, 96)]


def test_segment_with_points_and_box(server) -> None:
    payload = {
        "image": b64png(IMAGE),
        "points": [[80, 100]],
        "labels": [1],
        "box": [20, 30, 140, 180],
    }
    status, body = server.post_json("/v1/segment", payload)
    assert status == 200, body
    assert (body["width"], body["height"]) == (160, 200)
    assert len(body["masks"]) == len(body["scores"]) == 1
    mask = decode_png(base64.b64decode(body["masks"][0]))
    assert mask.size == (160, 200) and set(np.unique(np.asarray(mask))) <= {0, 255}

    status, body = server.post_json(
        "/v1/segment", {"image": b64png(IMAGE), "points": [[10, 10]], "multimask": True}
    )
    assert status == 200 and len(body["masks"]) == 3  # SAM2's multimask output


def test_segment_batch(server) -> None:
    items = [
        {"image": b64png(IMAGE), "points": [[50, 60]]},
        {"image": b64png(synthetic_image(128, seed=4)), "box": [10, 10, 100, 90]},
        {"image": b64png(IMAGE), "points": [[5, 5], [150, 190]], "labels": [1, 0]},
    ]
    status, body = server.post_json("/v1/segment/batch", {"items": items})
    assert status == 200
    assert [(r["width"], r["height"]) for r in body["results"]] == [
        (160, 200),
        (128, 128),
        (160, 200),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/v1/remove-background", b"", 400, "empty body"),
        ("POST", "/v1/remove-background", b"hello, not an image", 400, "not a decodable image"),
        (
            "POST",
            "/v1/remove-background",
            b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
            400,
            "not a decodable",
        ),
        ("POST", "/v1/remove-background?output=jpeg", None, 400, "output must be"),
        ("POST", "/v1/remove-background", b"x" * (3 * 1024 * 1024), 413, "limit is"),
        ("POST", "/v1/segment", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/segment", b"[1, 2]", 400, "JSON object"),
        ("POST", "/v1/segment/batch", b'{"items": []}', 400, "non-empty list"),
        ("POST", "/v1/remove-background/batch", b'{"images": ["!!!"]}', 400, "not valid base64"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(server, method, path, body, status, needle) -> None:
    body = png_bytes(IMAGE) if body is None else body
    got, _headers, raw = server.request(method, path, body)
    assert got == status, raw
    error = json.loads(raw)
    assert needle in error["error"], error
    assert server.request("GET", "/health")[0] == 200  # still serving


def test_too_many_pixels_and_too_big_batches_are_413(server) -> None:
    huge = np.zeros((1100, 1000, 3), dtype=np.uint8)  # 1.1 MP > the 1 MP test limit
    status, _, raw = server.request("POST", "/v1/remove-background", png_bytes(huge))
    assert status == 413 and "pixels" in json.loads(raw)["error"]
    status, body = server.post_json("/v1/remove-background/batch", {"images": [b64png(IMAGE)] * 5})
    assert status == 413 and "limit is 4" in body["error"]


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        ({}, "at least one point"),
        ({"points": [[1, 2, 3]]}, "[x, y] pairs"),
        ({"points": [["a", 2]]}, "[x, y] pairs"),
        ({"points": [[10, 10]], "labels": [1, 1]}, "0 or 1 for each point"),
        ({"points": [[10, 10]], "labels": [7]}, "0 or 1 for each point"),
        ({"box": [10, 10, 5, 50]}, "x0 < x1"),
        ({"box": [1, 2, 3]}, "[x0, y0, x1, y1]"),
        ({"points": [[5000, 10]]}, "outside the 160x200 image"),
    ],
)
def test_bad_prompts_are_422(server, prompt, needle) -> None:
    status, body = server.post_json("/v1/segment", {"image": b64png(IMAGE), **prompt})
    assert status == 422, body
    assert needle in body["error"]
    status, body = server.post_json("/v1/segment", {"image": "%%%", "points": [[1, 1]]})
    assert status == 400 and "base64" in body["error"]


def test_metrics_count_requests_latency_and_queue(server) -> None:
    before = server.get_json("/metrics")[1]
    server.request("POST", "/v1/remove-background?output=mask", png_bytes(IMAGE))
    server.request("POST", "/v1/remove-background", b"junk")
    status, after = server.get_json("/metrics")
    assert status == 200
    route = "/v1/remove-background"
    assert after["requests"][route] == before["requests"].get(route, 0) + 2
    assert after["responses_by_status"]["400"] >= before["responses_by_status"].get("400", 0) + 1
    assert after["images"][route] >= before["images"].get(route, 0) + 1
    lat = after["latency_ms"][route]
    assert lat["count"] >= 2 and 0 < lat["p50"] <= lat["max"]
    assert after["queue_depth"] == 0 and after["in_flight"] == 0
    status, _, text = server.request("GET", "/metrics?format=prometheus")
    assert status == 200 and b'orch_gpu_requests_total{route="/v1/remove-background"}' in text
    assert b"orch_gpu_queue_depth 0" in text


def test_queue_depth_rises_under_concurrent_requests(server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    payload = {"items": [{"image": b64png(IMAGE), "points": [[50, 60]]}] * 2}
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(server.post_json, "/v1/segment/batch", payload) for _ in range(4)]
        statuses = [f.result()[0] for f in futures]
    assert statuses == [200] * 4
    metrics = server.get_json("/metrics")[1]
    assert metrics["max_queue_depth"] >= 1  # requests waited behind the one on the lanes
    assert metrics["queue_depth"] == 0


def run_module(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gpu", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def test_slow_requests_are_logged_with_their_stages(server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gpu.slow")
    before = server.get_json("/metrics")[1]["slow_requests"]
    assert before["threshold_ms"] == 50.0
    status, _, _ = server.request("POST", "/v1/remove-background?output=mask", png_bytes(IMAGE))
    assert status == 200
    after = server.get_json("/metrics")[1]["slow_requests"]
    assert after["count"] == before["count"] + 1 or after["count"] > before["count"]
    entry = [e for e in after["recent"] if e["route"] == "/v1/remove-background"][-1]
    stages = entry["stages_ms"]
    assert list(stages) == ["read", "decode", "queue", "model", "encode"]
    assert entry["status"] == 200 and entry["images"] == 1
    assert stages["model"] > 10  # the forward pass dominates on a CPU
    assert sum(stages.values()) <= entry["total_ms"] + 0.5
    logged = [r.getMessage() for r in caplog.records if r.name == "gpu.slow"]
    assert any("slow request /v1/remove-background" in m and "model " in m for m in logged)
    _, _, text = server.request("GET", "/metrics?format=prometheus")
    assert b"orch_gpu_slow_requests_total" in text


def test_allocator_defaults_to_expandable_segments_unless_the_user_set_it() -> None:
    from gpu.device import configure_allocator

    env: dict[str, str] = {}
    assert configure_allocator(env).endswith("(orch's default)")
    assert env == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    user = {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}
    assert "set by the user" in configure_allocator(user)
    assert user == {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}
    newer = {"PYTORCH_ALLOC_CONF": "expandable_segments:False"}  # torch >= 2.9's name
    configure_allocator(newer)
    assert "PYTORCH_CUDA_ALLOC_CONF" not in newer


def test_python_m_gpu_refuses_to_start_without_weights(free_port) -> None:
    proc = run_module(["--models", "sam2", "--sam2-size", "256", "--port", str(free_port)])
    assert proc.returncode == 2
    assert "no weights for sam2" in proc.stderr and "--random-weights" in proc.stderr


def test_python_m_gpu_serves_on_loopback(free_port, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    env.pop("PYTORCH_ALLOC_CONF", None)
    cmd = [sys.executable, "-m", "gpu", "--models", "sam2", "--sam2-size", "256",
           "--lanes", "1", "--random-weights", "--port", str(free_port)]  # fmt: skip
    log = open(tmp_path / "service.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        import http.client

        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "service.log").read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", free_port, timeout=5)
                conn.request("GET", "/health")
                body = json.loads(conn.getresponse().read())
                break
            except OSError:
                assert time.monotonic() < deadline, "service did not come up"
                time.sleep(0.5)
        # The service defaults the CUDA allocator to expandable segments (no user setting here).
        assert body["device"]["allocator"] == "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
        assert body["models"] == {
            "sam2": {
                "config": "configs/sam2.1/sam2.1_hiera_t.yaml",
                "image_size": 256,
                "weights": "random (explicitly requested; outputs are meaningless)",
            }
        }
        conn = http.client.HTTPConnection("127.0.0.1", free_port, timeout=30)
        conn.request("POST", "/v1/remove-background", png_bytes(IMAGE))
        resp = conn.getresponse()
        assert resp.status == 503 and "not loaded" in json.loads(resp.read())["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
