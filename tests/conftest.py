"""Shared fixtures: tiny data trees built on the fly and Hydra configs composed in-process."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def make_gopro_tree(
    root: Path,
    sequences: dict[str, int],
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
    split: str = "train",
) -> Path:
    """`root/split/<seq>/{blur,sharp}/<frame>.png` with random images; blur = 255 - sharp."""
    rng = np.random.default_rng(seed)
    for seq, frames in sequences.items():
        for frame in range(frames):
            sharp = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            write_png(root / split / seq / "sharp" / f"{frame:06d}.png", sharp)
            write_png(root / split / seq / "blur" / f"{frame:06d}.png", 255 - sharp)
    return root


# Four training sequences of 1-3 frames, GOPRO's names, for the loaders' tests.
GOPRO_SEQUENCES = {"GOPR0372_07_00": 3, "GOPR0374_11_00": 2, "GOPR0378_13_00": 2, "GOPR0384_11_01": 1}


@pytest.fixture
def gopro(tmp_path: Path) -> Path:
    """A small GOPRO tree: GOPRO_SEQUENCES in `train`, one 2-frame sequence of another size in `test`."""
    make_gopro_tree(tmp_path, GOPRO_SEQUENCES, size=(40, 48))
    make_gopro_tree(tmp_path, {"GOPR0410_11_00": 2}, size=(36, 52), split="test")
    return tmp_path


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose a config as `train.py` would, with Hydra's runtime paths pointed at `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.hydra.runtime.output_dir = str(output_dir)
    return cfg


# A seconds-long CPU run on a tiny synthetic set (configs/debug/tiny.yaml).
TINY_TRAINING = ["debug=tiny"]


@pytest.fixture
def tiny_training_overrides(tmp_path: Path) -> list[str]:
    """Overrides for a seconds-long CPU training run on a tiny synthetic set in `tmp_path`."""
    return [*TINY_TRAINING, f"paths.data_dir={tmp_path / 'data'}"]


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


def make_clip(
    path: Path,
    frames: int = 10,
    sharp_index: int = 6,
    size: tuple[int, int] = (48, 64),
    fps: int = 25,
    audio: bool = True,
) -> list[np.ndarray]:
    """A short H.264 clip made from one photo: frame `sharp_index` sharp, the others blurred
    (each a little differently), with a 440 Hz AAC track when `audio`; returns the RGB frames written."""
    import av  # only the video tests need PyAV
    from skimage import data

    height, width = size
    still = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    written = []
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "8"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=44100, layout="mono") if audio else None
        for i in range(frames):
            frame = still if i == sharp_index else cv2.GaussianBlur(still, (0, 0), 2.0 + 0.1 * i)
            written.append(frame)
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            rate = 44100
            t = np.arange(int(rate * frames / fps)) / rate
            pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # (1, samples)
            chunk = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = rate, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return written


def make_audio_only(path: Path) -> Path:
    """A one-second AAC file with no video stream (a "video" upload that has no pictures)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="flt", layout="mono")
        chunk.sample_rate = 8000
        out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path
