"""The web app's photo requests: the page, health, deblurring and every bad input."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srn_deblur.inference import plan_tiles
from srn_deblur.webapp.uploads import download_name
from tests.webapp.helpers import (
    GOOD,
    MAX_BYTES,
    MAX_PIXELS,
    MAX_VIDEO_BYTES,
    MAX_VIDEO_SECONDS,
    OVERLAP,
    TILE,
    assert_close_pixels,
    decode,
    encode,
    expected,
    photo,
    upload,
)

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
