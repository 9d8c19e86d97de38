"""The web app through Flask's test client: every endpoint, every bad input, queueing, config."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from datamodules.image_io import to_tensor, to_uint8
from srn_deblur.checkpoints import newest_checkpoint
from srn_deblur.inference import CheckpointError, deblur, plan_tiles, save_network
from srn_deblur.network import SRNDeblurNet
from srn_deblur.webapp import ModelService, create_app
from srn_deblur.webapp.checkpoints import resolve_checkpoint
from srn_deblur.webapp.service import resolve_device
from srn_deblur.webapp.uploads import download_name
from tests.conftest import compose_config, make_audio_only, make_clip

REPO = Path(__file__).resolve().parents[1]
TILE, OVERLAP, WHOLE_MAX = 48, 16, 48 * 48
MAX_BYTES, MAX_PIXELS = 200_000, 120 * 120
# Video uploads: larger than a photo's byte limit, below the 3x body the byte-limit test sends.
MAX_VIDEO_BYTES, MAX_VIDEO_SECONDS = 400_000, 2.0


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread; two spinning threads crawl on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_checkpoint(net: SRNDeblurNet, path: Path) -> Path:
    """A checkpoint in the format train.py writes (Lightning `net.` prefix + `net_config`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_network(net, path)


@pytest.fixture
def net() -> SRNDeblurNet:
    torch.manual_seed(0)
    return SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1).eval()


@pytest.fixture
def checkpoint(net: SRNDeblurNet, tmp_path: Path) -> Path:
    return save_checkpoint(net, tmp_path / "tiny.ckpt")


def make_service(checkpoint: Path, **kwargs) -> ModelService:
    options = dict(
        device="cpu", precision="fp32", tile_size=TILE, tile_overlap=OVERLAP, whole_image_max_pixels=WHOLE_MAX
    )
    return ModelService(checkpoint, **{**options, **kwargs})


@pytest.fixture
def service(checkpoint: Path):
    svc = make_service(checkpoint)
    yield svc
    svc.close(timeout=10)


@pytest.fixture
def app(service: ModelService):
    return create_app(
        service,
        max_upload_bytes=MAX_BYTES,
        max_pixels=MAX_PIXELS,
        max_video_bytes=MAX_VIDEO_BYTES,
        max_video_seconds=MAX_VIDEO_SECONDS,
    )


@pytest.fixture
def client(app):
    return app.test_client()


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random `(H, W, 3)` uint8 picture (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, height // 8 + 2, width // 8 + 2), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(
        coarse, size=(height, width), mode="bicubic", align_corners=False
    )
    return to_uint8(smooth[0])


def encode(pixels: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def expected(net: SRNDeblurNet, pixels: np.ndarray, tile_size: int | None = None) -> np.ndarray:
    """What the app must return: the network's finest estimate as 8-bit RGB."""
    with torch.inference_mode():
        out = deblur(net, to_tensor(pixels)[None], tile_size=tile_size, tile_overlap=OVERLAP)
    return to_uint8(out[0])


def decode(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def upload(client, data: bytes, name: str = "photo.png", url: str = "/api/deblur", field: str = "image"):
    return client.post(url, data={field: (io.BytesIO(data), name)}, content_type="multipart/form-data")


def assert_close_pixels(actual: np.ndarray, wanted: np.ndarray) -> None:
    assert actual.shape == wanted.shape
    # Same weights, same ops: at most one 8-bit step of rounding difference.
    assert np.abs(actual.astype(int) - wanted.astype(int)).max() <= 1


# --- the page ---------------------------------------------------------------------------------


def test_page_has_picker_drop_zone_progress_viewer_and_download(client, service):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'name="viewport"' in html  # phone-sized screens
    accept = "image/jpeg,image/png,image/webp,video/*,.mp4,.mov,.mkv,.webm,.avi"
    assert 'type="file"' in html and f'accept="{accept}"' in html
    elements = ("drop-zone", "progress", "error", "before-image", "after-image", "slider", "download")
    for element in elements:
        assert f'id="{element}"' in html, element
    assert 'data-jobs-url="/api/jobs"' in html and f'data-max-bytes="{MAX_BYTES}"' in html
    assert f"{service.parameters:,} parameters" in html
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "XMLHttpRequest" in script.get_data(as_text=True)
    style = client.get("/static/style.css")
    assert style.status_code == 200 and "@media" in style.get_data(as_text=True)


# --- health -----------------------------------------------------------------------------------


def test_health_reports_the_loaded_model(client, net, checkpoint):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    model = body["model"]
    assert model["checkpoint"] == str(checkpoint)
    assert model["config"] == net.config
    assert model["parameters"] == sum(p.numel() for p in net.parameters())
    assert model["device"] == "cpu" and model["worker_alive"] is True
    assert (model["tile_size"], model["tile_overlap"]) == (TILE, OVERLAP)
    formats = ["image/jpeg", "image/png", "image/webp"]
    assert body["limits"] == {
        "max_upload_bytes": MAX_BYTES,
        "max_pixels": MAX_PIXELS,
        "max_video_bytes": MAX_VIDEO_BYTES,
        "max_video_seconds": MAX_VIDEO_SECONDS,
        "formats": formats,
        "video_suffixes": [".mp4", ".mov", ".mkv", ".webm", ".avi"],
    }
    assert (model["precision"], model["rounding"]) == ("fp32", "round")


# --- deblurring -------------------------------------------------------------------------------


FORMATS = [("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"lossless": True})]


@pytest.mark.parametrize(("fmt", "options"), FORMATS)
def test_deblur_returns_the_networks_png_at_the_input_size(client, net, fmt, options):
    pixels = photo(36, 44, seed=1)
    data = encode(pixels, fmt, **options)
    response = upload(client, data, f"holiday shot.{fmt.lower()}")
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "image/png"
    assert response.headers["Content-Disposition"] == 'attachment; filename="holiday_shot_deblurred.png"'
    assert response.headers["X-Deblur-Passes"] == "1"
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # JPEG: compare with its own decoding
    assert_close_pixels(decode(response.data), expected(net, decoded))


def test_exif_orientation_is_honoured(client, net):
    stored = photo(24, 40, seed=2)  # as the camera stored it: 40 wide, 24 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    response = upload(client, data, "portrait.jpg")
    assert response.status_code == 200
    out = decode(response.data)
    assert out.shape == (40, 24, 3)  # upright: 24 wide, 40 high
    upright = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert_close_pixels(out, expected(net, upright))


def test_large_photo_runs_in_tiles_and_keeps_its_exact_size(client, net):
    pixels = photo(101, 117, seed=3)  # 11,817 pixels > WHOLE_MAX: tiled, odd sizes
    response = upload(client, encode(pixels))
    assert response.status_code == 200
    passes = plan_tiles(101, 117, TILE, OVERLAP).count
    assert passes > 4 and response.headers["X-Deblur-Passes"] == str(passes)
    assert_close_pixels(decode(response.data), expected(net, pixels, tile_size=TILE))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_alpha_and_palette_photos_come_back_as_rgb(client, mode):
    image = Image.fromarray(photo(20, 28, seed=4)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    response = upload(client, buffer.getvalue())
    assert response.status_code == 200
    assert decode(response.data).shape == (20, 28, 3)


def test_colour_profile_is_kept(client):
    profile = b"\x00" * 128 + b"a fake but opaque ICC profile"
    data = encode(photo(16, 16), "PNG", icc_profile=profile)
    response = upload(client, data)
    assert Image.open(io.BytesIO(response.data)).info.get("icc_profile") == profile


def test_client_file_names_are_only_used_sanitised_for_the_download(client, tmp_path):
    response = upload(client, encode(photo(16, 16)), "../../../tmp/evil name.png")
    assert response.headers["Content-Disposition"] == 'attachment; filename="evil_name_deblurred.png"'
    assert download_name("") == "photo_deblurred.png" and download_name("../../..") == "photo_deblurred.png"
    assert not list(Path("/tmp").glob("evil*")) and not list(tmp_path.glob("**/evil*"))


# --- bad input --------------------------------------------------------------------------------

GOOD = photo(40, 40, seed=5)
PNG_BYTES = encode(GOOD)
# (upload bytes, client file name, form field, expected status, expected message)
BAD_INPUTS = [
    pytest.param(
        b"just some text, no pixels here",
        "notes.txt",
        "image",
        415,
        r"'notes.txt' cannot be read as an image.*Upload a PNG, JPEG or WebP photo",
        id="not an image",
    ),
    pytest.param(
        PNG_BYTES[: len(PNG_BYTES) // 2],
        "cut.png",
        "image",
        400,
        r"'cut.png' is truncated or corrupt.*upload the complete file again",
        id="truncated PNG",
    ),
    pytest.param(
        encode(GOOD, "JPEG")[:700],
        "cut.jpg",
        "image",
        400,
        r"'cut.jpg' is truncated or corrupt",
        id="truncated JPEG",
    ),
    pytest.param(b"", "empty.png", "image", 400, r"'empty.png' is empty \(0 bytes\)", id="empty upload"),
    pytest.param(b"", "", "image", 400, r"the upload is empty \(0 bytes\): choose a", id="no file chosen"),
    pytest.param(
        encode(GOOD, "GIF"),
        "anim.gif",
        "image",
        415,
        r"'anim.gif' is a GIF image; this app accepts PNG, JPEG or WebP: convert it",
        id="unsupported format",
    ),
    pytest.param(
        encode(photo(121, 130)),
        "huge.png",
        "image",
        413,
        r"'huge.png' is 130x121 \(0.0157 MP\), over this server's limit of 0.0144 MP: downscale it"
        r".*limits.max_pixels",
        id="over the pixel limit",
    ),
    pytest.param(
        PNG_BYTES + b"\0" * MAX_BYTES,
        "heavy.png",
        "image",
        413,
        r"'heavy.png' is larger than this server's limit of 0.2 MB: .*limits.max_upload_bytes",
        id="over the byte limit",
    ),
    pytest.param(
        b"\0" * (3 * MAX_BYTES),
        "heavier.png",
        "image",
        413,
        r"the upload is larger than this server's limit of 0.2 MB",
        id="request body over the byte limit",
    ),
    pytest.param(
        PNG_BYTES,
        "photo.png",
        "file",
        400,
        r"no file in the form field 'image'; the request had 'file': send the photo as image=@",
        id="wrong field name",
    ),
]


@pytest.mark.parametrize("url", ["/api/deblur", "/api/jobs"])
@pytest.mark.parametrize(("data", "name", "field", "status", "message"), BAD_INPUTS)
def test_bad_input_gets_a_4xx_with_a_clear_message_and_the_server_keeps_serving(
    client, url, data, name, field, status, message
):
    response = upload(client, data, name, url=url, field=field)
    assert response.status_code == status
    assert response.is_json
    assert re.search(message, response.get_json()["error"]), response.get_json()["error"]
    after = upload(client, encode(GOOD))
    assert after.status_code == 200 and decode(after.data).shape == (40, 40, 3)


def test_request_that_is_not_multipart_is_refused(client):
    response = client.post("/api/deblur", data=encode(GOOD), content_type="image/png")
    assert response.status_code == 400
    assert "multipart/form-data in the field 'image'" in response.get_json()["error"]


def test_unknown_api_routes_and_methods_answer_json(client):
    assert client.get("/api/nothing").status_code == 404
    assert "Not Found" in client.get("/api/nothing").get_json()["error"]
    response = client.get("/api/deblur")
    assert response.status_code == 405 and "Method Not Allowed" in response.get_json()["error"]


# --- the job API (what the page uses for progress) --------------------------------------------


def wait_done(client, status_url: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(status_url).get_json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"job {status_url} did not finish in {timeout} s")


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


class Gate:
    """Holds the worker inside the network until released, and records how many ran at once."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()
        self._handles = [net.register_forward_pre_hook(self._enter), net.register_forward_hook(self._leave)]

    def _enter(self, *_: object) -> None:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        self.entered.set()
        assert self.open.wait(60), "the test never opened the gate"

    def _leave(self, *_: object) -> None:
        with self._lock:
            self.active -= 1

    def remove(self) -> None:
        self.open.set()
        for handle in self._handles:
            handle.remove()


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


# --- which checkpoint, which device, config and entry point ----------------------------------


def test_newest_demo_checkpoint_is_found(net, tmp_path):
    logs = tmp_path / "logs"
    old = save_checkpoint(net, logs / "demo/runs/2026-01-01_00-00-00/checkpoints/last.ckpt")
    new = save_checkpoint(net, logs / "demo/runs/2026-01-02_00-00-00/checkpoints/last.ckpt")
    best = save_checkpoint(net, logs / "demo/runs/2026-01-02_00-00-00/checkpoints/epoch_0001-psnr_20.00.ckpt")
    save_checkpoint(net, logs / "other/runs/2026-02-01_00-00-00/checkpoints/last.ckpt")  # another task
    os.utime(old, (1_000, 1_000))
    os.utime(best, (2_000, 2_000))
    os.utime(new, (2_000, 2_000))  # same time as the best one: last.ckpt wins
    assert newest_checkpoint(logs, "demo") == new
    os.utime(old, (3_000, 3_000))
    assert resolve_checkpoint(None, logs, "demo") == old
    assert resolve_checkpoint(str(best), logs, "demo") == best


def test_no_checkpoint_says_which_command_makes_one(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"no ckpt_path given.*`python train.py`.*`python app.py ckpt_path="
    ):
        resolve_checkpoint(None, tmp_path / "logs", "demo")
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*missing.ckpt does not exist"):
        resolve_checkpoint(tmp_path / "missing.ckpt", tmp_path / "logs", "demo")


def test_device_choice():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            resolve_device("cuda")


def test_config_builds_the_app_on_localhost_from_the_newest_training_checkpoint(net, tmp_path, monkeypatch):
    from srn_deblur.webapp import server

    cfg = compose_config(["service.max_queue=3"], tmp_path, config_name="app")
    assert cfg.host == "127.0.0.1" and cfg.ckpt_path is None and cfg.checkpoint_task == "train"
    ckpt = save_checkpoint(
        net, Path(cfg.paths.log_dir) / "train/runs/2026-01-01_00-00-00/checkpoints/last.ckpt"
    )
    calls = {}

    def fake_serve(app, **kwargs):  # waitress would block; record how it was asked to listen
        calls.update(kwargs, app=app)
        assert app.test_client().get("/api/health").get_json()["model"]["checkpoint"] == str(ckpt)

    monkeypatch.setattr(server.waitress, "serve", fake_serve)
    server.serve(cfg)
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000 and calls["threads"] == cfg.threads
    assert calls["max_request_body_size"] > cfg.limits.max_upload_bytes
    assert calls["app"].config["MAX_CONTENT_LENGTH"] == calls["max_request_body_size"]


@pytest.mark.slow
def test_app_py_without_any_checkpoint_prints_the_command_to_make_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "app.py", f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "error: no ckpt_path given" in result.stderr and "`python train.py`" in result.stderr


# --- video uploads ----------------------------------------------------------------------------

FPS, SHARP = 25, 6


def clip_bytes(tmp_path: Path, name: str = "clip.mp4", **kwargs) -> tuple[bytes, list[np.ndarray]]:
    frames = make_clip(tmp_path / name, sharp_index=SHARP, fps=FPS, **kwargs)
    return (tmp_path / name).read_bytes(), frames


def test_video_upload_gives_its_sharpest_frame_deblurred_with_its_time_stamp(client, net, tmp_path):
    data, _ = clip_bytes(tmp_path)
    job = upload(client, data, "holiday.mp4", url="/api/jobs").get_json()
    done = wait_done(client, job["status_url"])
    assert done["status"] == "done" and done["progress"] == 1.0
    assert done["frame_seconds"] == pytest.approx(SHARP / FPS, abs=1e-3)
    assert done["download_name"] == "holiday_00-00-00.240_deblurred.png"
    assert (done["width"], done["height"]) == (64, 48)
    # The frame as the clip stores it, decoded here, then the network: the result must match.
    with av.open(io.BytesIO(data)) as container:
        frame = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][SHARP]
    result = client.get(done["result_url"])
    assert result.headers["X-Deblur-Frame-Seconds"] == "0.240"
    assert_close_pixels(decode(result.data), expected(net, frame, tile_size=TILE))  # 64x48 is tiled here
    source = client.get(done["source_url"])
    assert source.status_code == 200 and np.array_equal(decode(source.data), frame)


def _audio_only(path: Path) -> bytes:
    return make_audio_only(path).read_bytes()


def test_bad_video_uploads_get_a_4xx_and_the_server_keeps_serving(client, tmp_path):
    good, _ = clip_bytes(tmp_path)
    long_clip, _ = clip_bytes(tmp_path, "long.mp4", frames=int(FPS * MAX_VIDEO_SECONDS) + 10, audio=False)
    cases = [
        (b"just text", "notes.mp4", 415, r"'notes.mp4' cannot be read as a video.*upload an MP4, MOV"),
        (_audio_only(tmp_path / "sound.mp4"), "sound.mp4", 415, r"'sound.mp4' has no video stream"),
        (long_clip, "long.mp4", 413, r"'long.mp4' lasts 2.\d s, over this server's limit of 2 s: cut it"),
        (good[: len(good) // 2], "cut.mp4", 400, r"'cut.mp4' is truncated or corrupt"),
        (good + b"\0" * MAX_VIDEO_BYTES, "heavy.mp4", 413, r"server.s limit of 0.4 MB for vid"),
    ]
    for data, name, status, message in cases:
        response = upload(client, data, name, url="/api/jobs")
        assert response.status_code == status, (name, response.get_json())
        assert re.search(message, response.get_json()["error"]), response.get_json()["error"]
        assert client.get("/api/health").status_code == 200
    job = upload(client, good, "fine.mp4", url="/api/jobs").get_json()
    assert wait_done(client, job["status_url"])["status"] == "done"


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
