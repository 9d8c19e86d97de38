"""From the composed `configs/app.yaml` to a running waitress server (what `app.py` calls)."""

from __future__ import annotations

import logging

import hydra
import waitress
from flask import Flask
from omegaconf import DictConfig

from srn_deblur.webapp.checkpoints import resolve_checkpoint
from srn_deblur.webapp.routes import create_app, request_body_limit
from srn_deblur.webapp.service import ModelService

log = logging.getLogger(__name__)


def build_app(cfg: DictConfig) -> tuple[Flask, ModelService]:
    """Resolve the checkpoint, load the model once, and build the Flask app around it."""
    checkpoint = resolve_checkpoint(cfg.get("ckpt_path"), cfg.paths.log_dir, cfg.checkpoint_task)
    service: ModelService = hydra.utils.instantiate(cfg.service, checkpoint=checkpoint)
    limits = cfg.limits
    app = create_app(
        service,
        max_upload_bytes=limits.max_upload_bytes,
        max_pixels=limits.max_pixels,
        max_video_bytes=limits.max_video_bytes,
        max_video_seconds=limits.max_video_seconds,
    )
    return app, service


def serve(cfg: DictConfig) -> None:
    """Serve the app with waitress until interrupted; the worker stops with it."""
    app, service = build_app(cfg)
    log.info(
        "serving %s (%s parameters) on %s at http://%s:%d/ ; Ctrl+C stops",
        service.checkpoint,
        f"{service.parameters:,}",
        service.device,
        cfg.host,
        cfg.port,
    )
    try:
        waitress.serve(
            app,
            host=cfg.host,
            port=cfg.port,
            threads=cfg.threads,
            max_request_body_size=request_body_limit(
                max(cfg.limits.max_upload_bytes, cfg.limits.max_video_bytes)
            ),
        )
    finally:
        service.close(timeout=5)


__all__ = ["build_app", "serve"]
