"""The page in a real browser: headless Debian Chromium driven by Playwright, against the app
served by waitress on 127.0.0.1. CI installs Chromium (`.ci/run`); elsewhere these skip."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import waitress
from PIL import Image

from srn_deblur.webapp import create_app
from tests.conftest import make_clip
from tests.webapp.helpers import (
    TILE,
    assert_close_pixels,
    encode,
    expected,
    make_service,
    photo,
    save_checkpoint,
    tiny_net,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium"
        " (apt-get update && apt-get install -y chromium; .ci/run does it)",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')"
)

# Each network pass sleeps this long, so a tiled photo takes long enough for progress to show.
PASS_DELAY_S = 0.15


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, service, network) of the app served by waitress on a free localhost port."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    net = tiny_net()
    checkpoint = save_checkpoint(net, tmp_path_factory.mktemp("browser") / "tiny.ckpt")
    service = make_service(checkpoint)
    slow = service.net.register_forward_pre_hook(lambda *_: time.sleep(PASS_DELAY_S))
    app = create_app(
        service,
        max_upload_bytes=2_000_000,
        max_pixels=1_000_000,
        max_video_bytes=2_000_000,
        max_video_seconds=5,
    )
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", service, net
    server.close()
    thread.join(10)
    slow.remove()
    service.close(timeout=10)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


# Records every status line the page shows, so the test can see the progress it reported.
RECORD_STATUS = """
document.addEventListener("DOMContentLoaded", () => {
  window.statusSeen = [];
  const el = document.getElementById("status-text");
  const record = () => window.statusSeen.push(el.textContent);
  new MutationObserver(record).observe(el, { childList: true, characterData: true, subtree: true });
});
"""


def open_page(browser, url: str, **context_options):
    context = browser.new_context(accept_downloads=True, **context_options)
    page = context.new_page()
    page.add_init_script(RECORD_STATUS)
    page.goto(url)
    return context, page


def wait_for_result(page) -> None:
    page.wait_for_selector("#result", state="visible", timeout=60_000)


def shown_size(page, selector: str) -> tuple[int, int]:
    return tuple(page.eval_on_selector(selector, "img => [img.naturalWidth, img.naturalHeight]"))


def download_result(page, tmp_path: Path, name: str) -> np.ndarray:
    """Click the page's download button; check the suggested name and return the saved RGB pixels."""
    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == name
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    return np.asarray(Image.open(saved).convert("RGB"))


def test_upload_shows_progress_then_the_result_and_downloads_the_sharp_png(browser, served, tmp_path):
    url, service, net = served
    pixels = photo(150, 130, seed=21)  # 130 wide, 150 high: tiled into several passes
    source = tmp_path / "street.png"
    source.write_bytes(encode(pixels))
    context, page = open_page(browser, url, viewport={"width": 1280, "height": 900})
    try:
        page.set_input_files("#file-input", str(source))
        wait_for_result(page)
        seen = page.evaluate("window.statusSeen")
        assert any(s.startswith("Uploading") for s in seen), seen
        assert any(s.startswith("Deblurring tile ") for s in seen), seen
        assert page.is_hidden("#error")
        assert shown_size(page, "#after-image") == (130, 150)
        assert shown_size(page, "#before-image") == (130, 150)
        assert "130×150 pixels" in page.inner_text("#result-info")

        result = download_result(page, tmp_path, "street_deblurred.png")
        assert_close_pixels(result, expected(net, pixels, tile_size=TILE))

        page.fill("#slider", "20")  # the before/after divider follows the slider
        assert page.eval_on_selector("#viewer", "v => v.style.getPropertyValue('--split')") == "20%"
        page.click("button[data-mode=side]")
        before, after = (
            page.locator("#before-image").bounding_box(),
            page.locator("#after-image").bounding_box(),
        )
        assert after["x"] >= before["x"] + before["width"] - 1 and abs(after["y"] - before["y"]) < 1

        shot = tmp_path / "result-desktop.png"
        page.screenshot(path=str(shot), full_page=True)
        assert Image.open(shot).size[0] == 1280
    finally:
        context.close()


def test_bad_file_shows_the_servers_message_and_the_next_photo_works(browser, served, tmp_path):
    url, _, _ = served
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    good = tmp_path / "fine.jpg"
    good.write_bytes(encode(photo(40, 56, seed=22), "JPEG"))
    context, page = open_page(browser, url)
    try:
        page.set_input_files("#file-input", str(bad))
        page.wait_for_selector("#error", state="visible", timeout=30_000)
        assert "'notes.txt' cannot be read as an image" in page.inner_text("#error")
        assert page.is_hidden("#result")
        page.set_input_files("#file-input", str(good))
        wait_for_result(page)
        assert page.is_hidden("#error")
        assert shown_size(page, "#after-image") == (56, 40)
    finally:
        context.close()


def test_phone_screen_drag_and_drop(browser, served, tmp_path):
    url, _, _ = served
    data = encode(photo(120, 90, seed=23))  # portrait
    phone = {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    }
    context, page = open_page(browser, url, **phone)
    try:
        page.evaluate(
            """([b64, name]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name, { type: "image/png" }));
                const zone = document.getElementById("drop-zone");
                for (const type of ["dragover", "drop"]) {
                  const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
                  zone.dispatchEvent(new DragEvent(type, options));
                }
            }""",
            [base64.b64encode(data).decode(), "dropped.png"],
        )
        wait_for_result(page)
        assert shown_size(page, "#after-image") == (90, 120)
        assert page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"
        )  # no sideways scrolling
        assert page.locator("#after-image").bounding_box()["width"] <= 390
        page.click("button[data-mode=side]")  # side by side stacks on a phone
        before, after = (
            page.locator("#before-image").bounding_box(),
            page.locator("#after-image").bounding_box(),
        )
        assert after["y"] >= before["y"] + before["height"] - 1
        assert page.get_attribute("#download", "download") == "dropped_deblurred.png"
        shot = tmp_path / "result-phone.png"
        page.screenshot(path=str(shot), full_page=True)
        assert Image.open(io.BytesIO(shot.read_bytes())).size[0] == 390 * 2
    finally:
        context.close()


def test_video_upload_shows_its_sharpest_frame_deblurred_with_the_time_stamp(browser, served, tmp_path):
    url, _, net = served
    clip = tmp_path / "walk.mp4"
    make_clip(clip, frames=10, sharp_index=4, size=(48, 64), fps=25)
    with av.open(str(clip)) as container:  # the sharp frame as the clip stores it, decoded here
        frame = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][4]
    context, page = open_page(browser, url)
    try:
        page.set_input_files("#file-input", str(clip))
        wait_for_result(page)
        assert page.is_hidden("#error")
        assert "frame at 0:00.160" in page.inner_text("#result-info")
        assert shown_size(page, "#after-image") == (64, 48) and shown_size(page, "#before-image") == (64, 48)
        result = download_result(page, tmp_path, "walk_00-00-00.160_deblurred.png")
        assert_close_pixels(result, expected(net, frame, tile_size=TILE))
        page.screenshot(path=str(tmp_path / "video-result.png"), full_page=True)
    finally:
        context.close()
