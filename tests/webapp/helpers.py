"""The web app tests' shared helpers: the app's test settings, tiny photos, the expected output."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules.image_io import to_tensor, to_uint8
from srn_deblur.inference import deblur, save_network
from srn_deblur.network import SRNDeblurNet
from srn_deblur.webapp import ModelService

REPO = Path(__file__).resolve().parents[2]
TILE, OVERLAP, WHOLE_MAX = 48, 16, 48 * 48
MAX_BYTES, MAX_PIXELS = 200_000, 120 * 120
# Video uploads: larger than a photo's byte limit, below the 3x body the byte-limit test sends.
MAX_VIDEO_BYTES, MAX_VIDEO_SECONDS = 400_000, 2.0


def save_checkpoint(net: SRNDeblurNet, path: Path) -> Path:
    """A checkpoint in the format train.py writes (Lightning `net.` prefix + `net_config`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_network(net, path)


def tiny_net() -> SRNDeblurNet:
    """The web app tests' network: tiny, seeded, in eval mode."""
    torch.manual_seed(0)
    return SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1).eval()


def make_service(checkpoint: Path, **kwargs) -> ModelService:
    options = dict(
        device="cpu", precision="fp32", tile_size=TILE, tile_overlap=OVERLAP, whole_image_max_pixels=WHOLE_MAX
    )
    return ModelService(checkpoint, **{**options, **kwargs})


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


def wait_done(client, status_url: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(status_url).get_json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"job {status_url} did not finish in {timeout} s")



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



# A photo every request test can send and expect to pass.
GOOD = photo(40, 40, seed=5)
