"""Fixtures for the web app's tests: a tiny network, its checkpoint, the service and the app."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srn_deblur.network import SRNDeblurNet
from srn_deblur.webapp import ModelService, create_app
from tests.webapp.helpers import (
    MAX_BYTES,
    MAX_PIXELS,
    MAX_VIDEO_BYTES,
    MAX_VIDEO_SECONDS,
    make_service,
    save_checkpoint,
    tiny_net,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread; two spinning threads crawl on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def net() -> SRNDeblurNet:
    return tiny_net()


@pytest.fixture
def checkpoint(net: SRNDeblurNet, tmp_path: Path) -> Path:
    return save_checkpoint(net, tmp_path / "tiny.ckpt")


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
