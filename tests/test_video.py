"""Videos through deblur.py's pipeline: same frames, rate and size, audio kept, the sharp frame
chosen as the still; checked by reading the files back with PyAV and against the test's own
knowledge of which frame is sharp."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from datamodules.image_io import read_rgb
from srn_deblur.deblurrer import Deblurrer
from srn_deblur.network import SRNDeblurNet
from srn_deblur.runner import RunOptions, run
from srn_deblur.video import Selection, VideoError, open_video
from tests.conftest import make_audio_only, make_clip

FPS, FRAMES, SHARP = 25, 10, 6


@pytest.fixture
def deblurrer() -> Deblurrer:
    torch.manual_seed(0)
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1)
    return Deblurrer(net=net, device="cpu", precision="fp32")


def _streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        audio = container.streams.audio
        return {
            "frames": decoded,
            "rate": video.average_rate,
            "size": (video.codec_context.width, video.codec_context.height),
            "audio": audio[0].codec_context.name if audio else None,
            "audio_seconds": float(audio[0].duration * audio[0].time_base) if audio else 0.0,
        }


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_video_keeps_frames_rate_size_and_audio_and_the_still_is_the_sharp_frame(tmp_path, deblurrer, suffix):
    clip = tmp_path / f"clip{suffix}"
    made = tmp_path / "made.mp4"
    make_clip(made, FRAMES, SHARP, fps=FPS)
    if suffix == ".mp4":
        made.rename(clip)
    else:  # a WebM input: its audio (AAC) must be re-encoded (Opus) for the WebM output
        with av.open(str(made)) as src, av.open(str(clip), "w") as dst:
            v = dst.add_stream("libvpx-vp9", rate=FPS)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
            a = dst.add_stream("libopus", rate=48000)
            for frame in src.decode(video=0):
                dst.mux(
                    v.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24"))
                )
            dst.mux(v.encode(None))
            for frame in src.decode(audio=0):
                frame.pts = None
                dst.mux(a.encode(frame))
            dst.mux(a.encode(None))
    source = _streams(clip)
    out = tmp_path / "out"
    summary = run(str(clip), out, deblurrer, RunOptions(stills=1, progress=False))
    assert not summary.skipped
    result = _streams(out / clip.name)
    assert len(result["frames"]) == len(source["frames"]) == FRAMES
    assert result["rate"] == source["rate"] == Fraction(FPS)
    assert result["size"] == source["size"] == (64, 48)
    assert result["audio"] is not None and abs(result["audio_seconds"] - source["audio_seconds"]) < 0.1
    stills = sorted(out.glob("clip_*.png"))
    assert [p.name for p in stills] == [f"clip_00-00-00.{1000 * SHARP // FPS:03d}.png"]
    # The still is the deblurred frame SHARP: the same pixels as that frame of the output video.
    still = read_rgb(stills[0])
    errors = [np.abs(still.astype(int) - f.astype(int)).mean() for f in result["frames"]]
    assert int(np.argmin(errors)) == SHARP


def test_start_end_trim_the_video_and_every_thins_the_candidates(tmp_path, deblurrer):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, FRAMES, SHARP, fps=FPS)
    # Frames timed in [0.08 s, 0.32 s): indices 2..7, six frames; every=2 offers indices 2, 4, 6.
    options = RunOptions(stills=1, progress=False, selection=Selection(start=0.08, end=0.32, every=2))
    run(str(clip), tmp_path / "out", deblurrer, options)
    result = _streams(tmp_path / "out" / "clip.mp4")
    assert len(result["frames"]) == 6
    assert [p.name for p in (tmp_path / "out").glob("clip_*.png")] == ["clip_00-00-00.240.png"]
    # every=3 offers 2, 5: the sharp frame 6 is not a candidate, so the still is another one.
    options = RunOptions(
        stills=1, progress=False, video=False, selection=Selection(start=0.08, end=0.32, every=3)
    )
    run(str(clip), tmp_path / "out3", deblurrer, options)
    assert not (tmp_path / "out3" / "clip.mp4").exists()  # video=false: stills only
    names = [p.name for p in (tmp_path / "out3").glob("clip_*.png")]
    assert len(names) == 1 and names != ["clip_00-00-00.240.png"]


def test_stills_only_picks_the_k_sharpest_by_the_laplacian(tmp_path, deblurrer):
    clip = tmp_path / "clip.mp4"
    frames = make_clip(clip, FRAMES, SHARP, fps=FPS, audio=False)
    run(str(clip), tmp_path / "out", deblurrer, RunOptions(stills=3, video=False, progress=False))
    # Independently: rank the frames the test wrote by OpenCV's Laplacian variance.
    scores = [cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]
    best = sorted(np.argsort(scores)[-3:])
    wanted = [f"clip_00-00-00.{1000 * i // FPS:03d}.png" for i in best]
    assert sorted(p.name for p in (tmp_path / "out").glob("clip_*.png")) == wanted


def test_not_a_video_and_audio_only_are_refused_by_name(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("no pictures here")
    with pytest.raises(VideoError, match="fake.mp4.*cannot be read as a video") as info:
        open_video(fake)
    assert info.value.reason == "not_video"
    sound = make_audio_only(tmp_path / "sound.mp4")
    with pytest.raises(VideoError, match="no video stream") as info:
        open_video(sound)
    assert info.value.reason == "no_video_stream"
