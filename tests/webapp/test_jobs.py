"""The web app's job API and worker: progress, queueing, failures, kept results, closing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from srn_deblur.inference import plan_tiles
from srn_deblur.webapp import ModelService, create_app
from tests.webapp.helpers import (
    GOOD,
    MAX_BYTES,
    MAX_PIXELS,
    OVERLAP,
    REPO,
    TILE,
    Gate,
    assert_close_pixels,
    decode,
    encode,
    expected,
    make_service,
    photo,
    save_checkpoint,
    upload,
    wait_done,
)

# --- the job API (what the page uses for progress) --------------------------------------------


def test_job_api_reports_progress_and_serves_the_result(client, net):
    pixels = photo(90, 100, seed=6)
    response = upload(client, encode(pixels), "walk.png", url="/api/jobs")
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == job["status_url"] == f"/api/jobs/{job['id']}"
    assert job["status"] in ("queued", "running", "done") and (job["width"], job["height"]) == (100, 90)
    assert job["passes_total"] == plan_tiles(90, 100, TILE, OVERLAP).count
    done = wait_done(client, job["status_url"])
    assert done["status"] == "done" and done["progress"] == 1.0 and done["error"] is None
    assert done["passes_done"] == done["passes_total"] and done["seconds"] > 0
    assert done["download_name"] == "walk_deblurred.png"
    result = client.get(done["result_url"])
    assert result.status_code == 200 and result.mimetype == "image/png"
    assert_close_pixels(decode(result.data), expected(net, pixels, tile_size=TILE))
    assert client.get(done["result_url"]).status_code == 200  # fetchable again (kept results)


def test_job_progress_grows_while_the_job_runs(client, service):
    """The fraction is polled mid-run: it must take values strictly between 0 and 1, in order."""
    slow = service.net.register_forward_pre_hook(lambda *_: time.sleep(0.15))
    try:
        pixels = photo(100, 110, seed=9)
        job = upload(client, encode(pixels), url="/api/jobs").get_json()
        total = job["passes_total"]
        assert total == len(range(0, 100 - TILE + 32, 32)) * len(range(0, 110 - TILE + 32, 32)) >= 9
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = client.get(job["status_url"]).get_json()
            seen.append(body["progress"])
            if body["status"] == "done":
                break
            time.sleep(0.03)
    finally:
        slow.remove()
    assert seen[-1] == 1.0
    middle = sorted({p for p in seen if 0 < p < 1})
    assert len(middle) >= 3, seen  # at least three distinct fractions while it ran
    assert seen == sorted(seen)  # never goes back
    assert all(abs(p * total - round(p * total)) < 0.01 for p in middle)  # whole tiles done / total


@pytest.mark.slow
def test_tiled_photo_at_the_apps_real_settings_matches_the_whole_image(tmp_path, net):
    """configs/app.yaml's tile size, overlap and whole-image limit, against the network run once
    on the whole photo (no deblur(), no tiling) and quantised here."""
    settings = OmegaConf.load(REPO / "configs" / "app.yaml").service
    svc = ModelService(
        save_checkpoint(net, tmp_path / "tiny.ckpt"),
        device="cpu",
        precision="fp32",
        tile_size=settings.tile_size,
        tile_overlap=settings.tile_overlap,
        whole_image_max_pixels=settings.whole_image_max_pixels,
    )
    try:
        height, width = 1000, 1100  # 1.1 MP: over the whole-image limit, so tiled
        assert height * width > settings.whole_image_max_pixels
        pixels = photo(height, width, seed=10)
        app = create_app(svc, max_upload_bytes=20_000_000, max_pixels=2_000_000)
        response = upload(app.test_client(), encode(pixels), url="/api/deblur")
        assert response.status_code == 200
        assert int(response.headers["X-Deblur-Passes"]) > 1
        tiled = decode(response.data).astype(int)
    finally:
        svc.close(timeout=10)
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = net(x)[-1][0].clamp(0, 1).permute(1, 2, 0).numpy()
    whole = np.rint(whole * 255.0).astype(int)
    diff = np.abs(tiled - whole).max(axis=2)
    # Away from the tile seams (the tile grid derived here: stride = tile - overlap).
    stride = settings.tile_size - settings.tile_overlap
    seams_y = [e for t in range(0, height, stride) for e in (t, t + settings.tile_size) if 0 < e < height]
    seams_x = [e for t in range(0, width, stride) for e in (t, t + settings.tile_size) if 0 < e < width]
    interior = np.ones((height, width), bool)
    for e in seams_y:
        interior[max(0, e - 32) : e + 32] = False
    for e in seams_x:
        interior[:, max(0, e - 32) : e + 32] = False
    assert interior.sum() > 0.3 * interior.size
    # Same weights on the same pixels: one 8-bit step (rounding ties, channels-last sums), a
    # rare second where the coarse scales reach past the margin.
    assert diff[interior].max() <= 2 and (diff[interior] <= 1).mean() > 0.999
    # A random network is far from translation-blind at tile borders; the blend keeps the mean small.
    assert np.abs(tiled - whole).mean() < 1.0


def test_unknown_job_is_404(client):
    for url in ("/api/jobs/0123abc", "/api/jobs/0123abc/result"):
        response = client.get(url)
        assert response.status_code == 404 and "no job '0123abc'" in response.get_json()["error"]


def test_jobs_queue_behind_the_running_one_and_report_their_place(client, service):
    gate = Gate(service.net)
    try:
        first = upload(client, encode(photo(80, 80, seed=7)), url="/api/jobs").get_json()
        assert gate.entered.wait(30)
        second = upload(client, encode(photo(32, 32, seed=8)), url="/api/jobs").get_json()
        running = client.get(first["status_url"]).get_json()
        assert running["status"] == "running" and running["passes_done"] == 0 and 0 < running["passes_total"]
        waiting = client.get(second["status_url"]).get_json()
        assert waiting["status"] == "queued" and waiting["queue_position"] == 1
        early = client.get(second["result_url"])
        assert early.status_code == 409 and "not done yet" in early.get_json()["error"]
        gate.open.set()
        assert wait_done(client, first["status_url"])["status"] == "done"
        assert wait_done(client, second["status_url"])["status"] == "done"
    finally:
        gate.remove()
    assert gate.most_active == 1


def test_a_full_queue_answers_503_and_recovers(checkpoint):
    service = make_service(checkpoint, max_queue=1)
    client = create_app(service, max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS).test_client()
    gate = Gate(service.net)
    try:
        assert upload(client, encode(GOOD), url="/api/jobs").status_code == 202
        assert gate.entered.wait(30)  # the first runs ...
        waiting = upload(client, encode(GOOD), url="/api/jobs")  # ... one waits ...
        assert waiting.status_code == 202
        refused = upload(client, encode(GOOD), url="/api/jobs")  # ... and no more fit
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert "busy: 1 photos are already waiting. Try again" in refused.get_json()["error"]
        assert client.get("/api/health").get_json()["model"]["queue"] == {"waiting": 1, "capacity": 1}
        gate.open.set()
        assert wait_done(client, waiting.get_json()["status_url"])["status"] == "done"
        assert upload(client, encode(GOOD)).status_code == 200  # room again
    finally:
        gate.remove()
        service.close(timeout=10)


def test_concurrent_requests_are_serialised_and_never_mixed_up(app, service, net):
    gate = Gate(service.net)
    gate.open.set()  # count only
    pictures = [photo(32 + 8 * i, 40, seed=10 + i) for i in range(4)]
    results: dict[int, bytes] = {}

    def post(i: int) -> None:
        response = upload(app.test_client(), encode(pictures[i]))
        assert response.status_code == 200
        results[i] = response.data

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(pictures))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    gate.remove()
    assert sorted(results) == list(range(len(pictures)))
    assert gate.most_active == 1
    for i, picture in enumerate(pictures):
        assert_close_pixels(decode(results[i]), expected(net, picture))


def test_a_failing_photo_answers_500_and_the_worker_survives(client, service):
    def explode(*_: object) -> None:
        raise RuntimeError("simulated device failure")

    handle = service.net.register_forward_pre_hook(explode)
    try:
        failed = upload(client, encode(GOOD))
    finally:
        handle.remove()
    assert failed.status_code == 500
    assert "deblurring failed: RuntimeError: simulated device failure" in failed.get_json()["error"]
    assert client.get("/api/health").get_json()["model"]["worker_alive"] is True
    assert upload(client, encode(GOOD)).status_code == 200


def test_the_model_is_loaded_once_for_all_requests(checkpoint, monkeypatch):
    from srn_deblur import deblurrer as service_module  # where the service's network is loaded

    loads = []
    real_load = service_module.load_network

    def counting_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(service_module, "load_network", counting_load)
    svc = make_service(checkpoint)
    try:
        client = create_app(svc, max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS).test_client()
        for seed in range(3):
            assert upload(client, encode(photo(24, 24, seed=seed))).status_code == 200
    finally:
        svc.close(timeout=10)
    assert len(loads) == 1


def test_a_stopped_worker_is_reported_and_refuses_photos(client, service):
    service.close(timeout=10)
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["status"] == "worker stopped"
    refused = upload(client, encode(GOOD))
    assert refused.status_code == 503 and "worker has stopped: restart the app" in refused.get_json()["error"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_inference_runs_on_the_gpu_and_agrees_with_the_cpu(checkpoint, net):
    svc = make_service(checkpoint, device="auto")
    try:
        assert svc.device.type == "cuda" and next(svc.net.parameters()).is_cuda
        client = create_app(svc, max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS).test_client()
        pixels = photo(90, 100, seed=30)  # tiled
        response = upload(client, encode(pixels))
        assert response.status_code == 200
        assert client.get("/api/health").get_json()["model"]["device"].startswith("cuda")
    finally:
        svc.close(timeout=10)
    out = decode(response.data).astype(int)
    assert np.abs(out - expected(net, pixels, tile_size=TILE).astype(int)).max() <= 2  # GPU vs CPU kernels


# --------------------------------------------------------------------------- kept results, closing


def test_only_the_newest_finished_results_are_kept(checkpoint: Path):
    from srn_deblur.webapp.service import DONE
    from srn_deblur.webapp.uploads import Photo

    svc = make_service(checkpoint, keep_results=2)
    try:
        jobs = []
        for seed in range(4):
            job = svc.submit(Photo(photo(32, 32, seed), f"p{seed}.png"))
            assert job.finished.wait(60) and job.status == DONE
            jobs.append(job)
        # The fourth submission pruned the finished jobs down to the 2 newest before it: a, then b, c.
        assert svc.get(jobs[0].id) is None
        assert [svc.get(j.id) for j in jobs[1:]] == jobs[1:]
        assert all(svc.get(j.id).result for j in jobs[1:])
    finally:
        svc.close(timeout=30)


def test_close_finishes_the_queued_jobs_then_refuses_new_ones(checkpoint: Path):
    from srn_deblur.webapp.service import DONE, ServiceBusyError
    from srn_deblur.webapp.uploads import Photo

    svc = make_service(checkpoint, max_queue=8)
    jobs = [svc.submit(Photo(photo(48, 48, seed), f"q{seed}.png")) for seed in range(3)]
    svc.close(timeout=120)  # returns once the worker has drained the queue
    assert [j.status for j in jobs] == [DONE] * 3 and all(j.result for j in jobs)
    assert not svc.alive
    with pytest.raises(ServiceBusyError, match="stopped"):
        svc.submit(Photo(photo(16, 16), "late.png"))
