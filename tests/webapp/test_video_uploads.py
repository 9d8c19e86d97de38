"""Video uploads to the web app: the sharpest frame, deblurred, and bad clips."""

from __future__ import annotations

import io
import re
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import make_audio_only, make_clip
from tests.webapp.helpers import (
    MAX_VIDEO_BYTES,
    MAX_VIDEO_SECONDS,
    TILE,
    assert_close_pixels,
    decode,
    expected,
    upload,
    wait_done,
)

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
