"""`flowops serve` with a really trained pyfunc in a temporary store."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import mlflow.artifacts
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient
from PIL import Image
from pycocotools import mask as mask_utils

from flowops.hashing import MODEL_DIGEST_TAG, model_digest

from .conftest import BIN
from .services import Service as _Service
from .services import free_port, plain_mlflow_server

MODEL = "serve-model"


def Service(uri: str, *extra: str, alias: str = "production") -> _Service:
    return _Service(uri, *extra, model=MODEL, alias=alias)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_run):
    """A tiny trained model registered twice (v1 holds production, v2 is ready for a swap)."""
    tmp = tmp_path_factory.mktemp("serve")
    uri = tiny_run.copy_to(tmp)
    mp = pytest.MonkeyPatch()  # models:/ sources resolve through the global tracking URI
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("integration").experiment_id])
    model_id = run.outputs.model_outputs[0].model_id
    client.create_registered_model(MODEL)
    # the digest an import records and promote copies onto the version: serving checks it
    digest = model_digest(Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp / "m"))))
    for _ in range(2):
        client.create_model_version(
            MODEL,
            f"models:/{model_id}",
            run_id=run.info.run_id,
            model_id=model_id,
            tags={"flowops.git_commit": "c0ffee", MODEL_DIGEST_TAG: digest},
        )
    client.set_registered_model_alias(MODEL, "production", "1")
    yield uri, tmp
    mp.undo()


@pytest.fixture(scope="module")
def service(registry):
    uri, _ = registry
    svc = Service(uri, "--max-pixels", "200000", "--max-body-mb", "0.5")
    health = svc.wait_ready()
    yield svc, health
    svc.stop()


def test_a_model_logged_before_the_template_moved_is_served(registry, service):
    """#34: a version whose pyfunc was pickled as `flowops.pyfunc.SegmentationModel` (the pre-move
    pickle in tests/data) is served by `flowops serve` and answers /predict as the same model
    logged now does."""
    import shutil

    uri, tmp = registry
    svc, _ = service
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("integration").experiment_id])
    old = tmp / "before-34"
    shutil.copytree(next((tmp / "m").rglob("MLmodel")).parent, old)  # the model the fixture registered
    shutil.copyfile(Path(__file__).parents[1] / "data" / "python_model.before-34.pkl", old / "python_model.pkl")
    assert b"flowops.pyfunc" in (old / "python_model.pkl").read_bytes()
    version = str(client.create_model_version(MODEL, str(old), run_id=run.info.run_id).version)
    client.set_registered_model_alias(MODEL, "before34", version)
    before = Service(uri, alias="before34")
    try:
        assert before.wait_ready()["version"] == version
        body = image_bytes(64, 48, seed=3)
        answers = [
            requests.post(f"{s.url}/predict", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
            for s in (before, svc)
        ]
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        then, now = (a.json() for a in answers)
        assert then["version"] == version and then["fractions"] == now["fractions"] and then["masks"] == now["masks"]
    finally:
        before.stop()


def image_bytes(width: int, height: int, fmt: str = "JPEG", seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_health_reports_the_loaded_version(service):
    _svc, health = service
    assert health["status"] == "ok" and health["version"] == "1" and health["git_commit"] == "c0ffee"
    assert health["model"] == MODEL and health["alias"] == "production" and health["registry_poll_error"] is None
    assert health["loaded_at"].startswith("20")


@pytest.mark.parametrize("fmt, content_type", [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_predictions_have_the_input_size_and_valid_classes(service, fmt, content_type):
    svc, _ = service
    body = image_bytes(70, 50, fmt)
    r = requests.post(f"{svc.url}/predict", data=body, headers={"Content-Type": content_type}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"], out["version"]) == (70, 50, "1")
    assert out["class_names"] == ["background", "person", "car", "dog"]
    assert sum(out["fractions"].values()) == pytest.approx(1.0, abs=1e-4)
    for name, encoded in out["masks"].items():
        decoded = mask_utils.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
        assert decoded.shape == (50, 70)
        assert decoded.sum() / (50 * 70) == pytest.approx(out["fractions"][name], abs=1e-4)
    png = requests.post(f"{svc.url}/predict?format=png", data=body, headers={"Content-Type": content_type}, timeout=60)
    assert png.headers["content-type"] == "image/png" and png.headers["x-model-version"] == "1"
    mask = np.asarray(Image.open(io.BytesIO(png.content)))
    assert mask.shape == (50, 70) and mask.max() <= 3
    fractions = {n: float((mask == i).mean()) for i, n in enumerate(out["class_names"])}
    assert fractions == pytest.approx(out["fractions"], abs=1e-4)  # JSON and PNG describe the same mask


def test_multipart_upload(service):
    svc, _ = service
    r = requests.post(f"{svc.url}/predict", files={"image": ("a.jpg", image_bytes(40, 30), "image/jpeg")}, timeout=60)
    assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (40, 30)


def png_header(width: int, height: int) -> bytes:
    """A PNG that says it is width x height (8-bit grey) and holds no pixels: what a bomb looks like to a reader."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "body, content_type, query, status, message",
    [
        (b"this is not an image", "image/jpeg", "", 400, "not a readable image"),
        (image_bytes(60, 40)[:300], "image/jpeg", "", 400, "not a readable image"),
        (b"", "image/jpeg", "", 400, "empty body: send a JPEG or PNG image"),
        (
            image_bytes(60, 40),
            "text/plain",
            "",
            415,
            "content type text/plain: send image/jpeg, image/png or multipart/form-data",
        ),
        (image_bytes(600, 400), "image/jpeg", "", 413, "image is 600x400 = 240000 pixels, over the limit of 200000"),
        (os.urandom(600_000), "image/jpeg", "", 413, "over the limit of 524288"),
        (image_bytes(20, 20, "GIF"), "image/png", "", 400, "unsupported image format GIF: send a JPEG or PNG"),
        (image_bytes(20, 20), "image/jpeg", "?format=bmp", 400, "format must be json or png (got 'bmp')"),
        # #32.20: a 1 x N strip within the pixel limit, and a bomb PIL itself refuses (it got 400)
        (png_header(1, 100_000), "image/png", "", 413, "image is 1x100000: a side over 65535 pixels"),
        (png_header(100_000, 100_000), "image/png", "", 413, "image is too large: Image size (10000000000 pixels)"),
    ],
    ids=[
        "not-an-image",
        "truncated-jpeg",
        "empty",
        "wrong-type",
        "too-many-pixels",
        "body-too-large",
        "gif",
        "bad-format",
        "long-strip",
        "bomb",
    ],
)
def test_bad_requests_get_4xx_and_the_service_keeps_serving(service, body, content_type, query, status, message):
    svc, _ = service
    r = requests.post(f"{svc.url}/predict{query}", data=body, headers={"Content-Type": content_type}, timeout=60)
    assert r.status_code == status
    assert message in r.json()["error"]
    assert " object at 0x" not in r.json()["error"]  # no internal object names
    assert (
        requests.post(
            f"{svc.url}/predict", data=image_bytes(30, 30), headers={"Content-Type": "image/jpeg"}, timeout=60
        ).status_code
        == 200
    )


def test_metrics_in_prometheus_format(service):
    svc, _ = service
    text = requests.get(f"{svc.url}/metrics", timeout=10).text
    assert 'flowops_requests_total{endpoint="predict",status="200"}' in text
    assert "flowops_predict_seconds_bucket" in text and "flowops_model_version 1.0" in text


def test_slow_uploads_hold_no_prediction_slot(registry):
    """#32.19: four sockets sending 2 of 1,000,000 bytes made every other /predict answer 503 for 17 s
    (a request counted as in flight before its body was read, read with no time limit), and each
    disconnect logged an ASGI traceback. Bodies now arrive outside the prediction slots, within
    --body-timeout (else 408), and a client that goes away is answered quietly."""
    import socket

    uri, _ = registry
    svc = Service(uri, "--max-concurrent", "2", "--body-timeout", "4")
    slow = []
    try:
        svc.wait_ready()
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n"
        for _ in range(4):
            slow.append(socket.create_connection(("127.0.0.1", svc.port)))
            slow[-1].sendall(head + b"ab")
        deadline, health = time.monotonic() + 30, {}
        while health.get("uploads_arriving") != 4 and time.monotonic() < deadline:
            health = requests.get(f"{svc.url}/health", timeout=10).json()
        assert (health.get("uploads_arriving"), health.get("predictions_in_flight")) == (4, 0), health
        ok = requests.post(
            f"{svc.url}/predict", data=image_bytes(30, 30), headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        assert ok.status_code == 200, ok.text  # no slot is held by an upload still arriving
        for sock in slow:
            sock.settimeout(60)
            status = sock.recv(4096).split(b"\r\n", 1)[0]
            assert status == b"HTTP/1.1 408 Request Timeout", status
        gone = socket.create_connection(("127.0.0.1", svc.port))
        gone.sendall(head + b"ab")
        deadline = time.monotonic() + 30
        while requests.get(f"{svc.url}/health", timeout=10).json()["uploads_arriving"] != 1:
            assert time.monotonic() < deadline
        gone.close()  # mid-upload
        deadline = time.monotonic() + 30
        while requests.get(f"{svc.url}/health", timeout=10).json()["uploads_arriving"] != 0:
            assert time.monotonic() < deadline
    finally:
        for sock in slow:
            sock.close()
        svc.stop()
    err = svc.proc.stderr.read()
    assert "Traceback" not in err and "Exception in ASGI application" not in err, err[-3000:]


def test_health_answers_while_predictions_run_and_the_limit_answers_503(registry):
    """With one prediction slot taken by a 25-megapixel upload, /health still answers at once
    (it used to wait behind the event loop's inference), and a second /predict is told to retry."""
    uri, _ = registry
    svc = Service(uri, "--max-concurrent", "1", "--workers", "1", "--max-pixels", "30000000", "--max-body-mb", "100")
    try:
        svc.wait_ready()
        y, x = np.mgrid[0:5000, 0:5000]
        big = io.BytesIO()
        Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(big, format="PNG")
        first: list = []
        sender = threading.Thread(
            target=lambda: first.append(
                requests.post(
                    f"{svc.url}/predict", data=big.getvalue(), headers={"Content-Type": "image/png"}, timeout=300
                )
            )
        )
        sender.start()
        seen = []
        deadline = time.time() + 120
        while time.time() < deadline and not first:
            seen.append(requests.get(f"{svc.url}/health", timeout=30).json()["predictions_in_flight"])
            if seen[-1] == 1:
                busy = requests.post(
                    f"{svc.url}/predict", data=image_bytes(30, 30), headers={"Content-Type": "image/jpeg"}, timeout=60
                )
                assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
                assert busy.json()["error"] == "busy: 1 predictions in flight, the limit is 1; retry shortly"
                break
            time.sleep(0.01)
        sender.join(timeout=300)
        assert 1 in seen, seen  # /health answered while the big prediction was in flight
        assert first[0].status_code == 200 and (first[0].json()["width"], first[0].json()["height"]) == (5000, 5000)
        after = requests.post(
            f"{svc.url}/predict", data=image_bytes(30, 30), headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        assert after.status_code == 200  # the slot is free again
    finally:
        svc.stop()


def test_a_bearer_token_guards_predict_and_metrics_not_health(registry, tmp_path):
    uri, _ = registry
    (tmp_path / "token").write_text("s3cret-token\n")
    svc = Service(uri, "--token-file", str(tmp_path / "token"))
    try:
        svc.wait_ready()  # /health needs no token: probes have none
        post = lambda headers: requests.post(  # noqa: E731
            f"{svc.url}/predict",
            data=image_bytes(30, 30),
            headers={"Content-Type": "image/jpeg", **headers},
            timeout=60,
        )
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            r = post(headers)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", headers
            assert r.json()["error"] == "missing or wrong bearer token"
        assert post({"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert requests.get(f"{svc.url}/metrics", timeout=10).status_code == 401
        metrics = requests.get(f"{svc.url}/metrics", headers={"Authorization": "Bearer s3cret-token"}, timeout=10)
        assert metrics.status_code == 200 and 'status="401"' in metrics.text
    finally:
        svc.stop()


def test_a_taken_port_is_said_before_anything_claims_to_serve(registry):
    import socket

    uri, _ = registry
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [str(BIN / "flowops"), "serve", "--model", MODEL, "--port", str(port)],
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1 and "serving" not in proc.stdout
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(f"cannot listen on 127.0.0.1:{port}: Address already in use (is another service on that port?)")
    )


def test_missing_alias_at_start_is_a_clear_error(registry):
    uri, _ = registry
    svc = Service(uri, alias="canary")
    _, err = svc.proc.communicate(timeout=120)
    assert svc.proc.returncode == 1
    assert err.strip().splitlines()[-1] == f"model '{MODEL}' has no alias 'canary': promote a model first"


def test_hot_swap_under_load_fails_no_request_and_switches_once(registry):
    uri, _ = registry
    svc = Service(uri)
    try:
        svc.wait_ready()
        versions, failures, stop = [], [], threading.Event()
        body = image_bytes(64, 48)

        def client():
            while not stop.is_set():
                try:
                    r = requests.post(
                        f"{svc.url}/predict", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60
                    )
                    (versions if r.status_code == 200 else failures).append(
                        r.json().get("version") if r.status_code == 200 else r.status_code
                    )
                except requests.RequestException as exc:
                    failures.append(repr(exc))

        def answered(version: str, count: int, timeout: float = 120) -> None:
            """Wait until the load has had `count` answers from `version` (or failed)."""
            deadline = time.monotonic() + timeout
            while versions.count(version) < count and not failures and time.monotonic() < deadline:
                time.sleep(0.05)

        worker = threading.Thread(target=client)
        worker.start()
        answered("1", 5)  # the load is running against v1
        MlflowClient(uri).set_registered_model_alias(MODEL, "production", "2")
        seen = set()  # #32.21: /health says a swap is loading, while v1 still answers
        deadline = time.monotonic() + 120
        while "2" not in versions and not failures and time.monotonic() < deadline:
            health = requests.get(f"{svc.url}/health", timeout=5).json()
            seen.add((health["version"], health["loading_version"]))
            time.sleep(0.02)
        assert ("1", "2") in seen, seen
        answered("2", 5)  # ... and goes on through the swap to v2
        stop.set()
        worker.join(timeout=60)
        assert failures == []
        assert versions[0] == "1" and versions[-1] == "2"
        switches = sum(a != b for a, b in itertools.pairwise(versions))
        assert switches == 1, versions
        assert requests.get(f"{svc.url}/health", timeout=5).json()["swaps"] == 1
        svc.stop()
        said = [line for line in svc.proc.stderr.read().splitlines() if line.startswith("flowops serve:")]
        run_id = MlflowClient(uri).get_model_version(MODEL, "2").run_id
        assert said == [
            f"flowops serve: models:/{MODEL}@production loaded v1, run {run_id}",
            f"flowops serve: models:/{MODEL}@production swapped to v2 (was v1), run {run_id}",
        ]
    finally:
        svc.stop()
        MlflowClient(uri).set_registered_model_alias(MODEL, "production", "1")


def test_a_model_whose_files_no_longer_match_its_digest_is_not_served(registry):
    """#29: the version's recorded digest is not what the artifact store now holds (a file changed
    after the import): the service never loads it and says why in /health."""
    uri, _tmp = registry
    client = MlflowClient(uri)
    v1 = client.get_model_version(MODEL, "1")
    v3 = client.create_model_version(
        MODEL, v1.source, run_id=v1.run_id, model_id=v1.model_id, tags={MODEL_DIGEST_TAG: "0" * 64}
    )
    client.set_registered_model_alias(MODEL, "tampered", v3.version)
    svc = Service(uri, alias="tampered")
    try:
        health: dict = {}
        deadline = time.time() + 120
        while time.time() < deadline and not health.get("registry_poll_error"):
            assert svc.proc.poll() is None
            time.sleep(0.3)
            try:
                health = requests.get(f"{svc.url}/health", timeout=5).json()
            except requests.RequestException:
                continue
        assert health["status"] == "loading" and health.get("version") is None, health
        assert health["registry_poll_error"].endswith(
            f"models:/{MODEL}/{v3.version}: its files do not match the digest recorded when it was imported "
            f"(000000000000, now {v1.tags[MODEL_DIGEST_TAG][:12]}); not serving it"
        ), health
        r = requests.post(f"{svc.url}/predict", data=image_bytes(32, 32), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 503
    finally:
        svc.stop()
        client.delete_registered_model_alias(MODEL, "tampered")


def test_registry_unreachable_while_polling_keeps_the_model_serving(registry):
    """The registry is an mlflow server that goes down: keep serving, say so in /health."""
    uri, _tmp = registry
    server, server_url = plain_mlflow_server(uri)
    svc = None
    try:
        svc = Service(server_url)
        svc.wait_ready()
        os.killpg(server.pid, 9)  # the registry is gone
        server.wait()
        health = {}
        deadline = time.time() + 90
        while time.time() < deadline and not health.get("registry_poll_error"):
            time.sleep(0.3)
            health = requests.get(f"{svc.url}/health", timeout=5).json()
        assert health["status"] == "ok" and health["version"] == "1"
        # #32.21: anyone may read /health: it says what, never where (the address is in the log)
        assert health["registry_poll_error"].endswith(
            ": the tracking server cannot be reached (the service's log has the details)"
        ), health
        said = json.dumps(health)
        assert f":{server_url.rsplit(':', 1)[1]}" not in said and "127.0.0.1" not in said, health
        r = requests.post(
            f"{svc.url}/predict", data=image_bytes(32, 32), headers={"Content-Type": "image/jpeg"}, timeout=60
        )
        assert r.status_code == 200 and r.json()["version"] == "1"
    finally:
        if svc:
            svc.stop()
            logged = [line for line in svc.proc.stderr.read().splitlines() if "@production: " in line]
            assert logged and server_url.rsplit(":", 1)[1] in logged[0], logged  # the details, for operators
        if server.poll() is None:
            os.killpg(server.pid, 9)


def test_parity_with_mlflow_models_serve(service, registry):
    """MLflow's own server, fed the documented request format, returns the same mask."""
    svc, _ = service
    uri, _ = registry
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@production",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = image_bytes(50, 40, "PNG", seed=3)
        rgb = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        theirs = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": rgb[None].tolist()}, timeout=120)
        assert theirs.status_code == 200, theirs.text
        their_mask = np.asarray(theirs.json()["predictions"], dtype=np.uint8)[0]
        ours = requests.post(
            f"{svc.url}/predict?format=png", data=body, headers={"Content-Type": "image/png"}, timeout=60
        )
        our_mask = np.asarray(Image.open(io.BytesIO(ours.content)))
        assert their_mask.shape == our_mask.shape == (40, 50)
        assert np.array_equal(their_mask, our_mask)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
