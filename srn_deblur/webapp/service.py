"""The model service: one network loaded once, one worker thread, a bounded queue of jobs.

A deblurring job can take minutes on a CPU and a network's activations can fill a GPU, so
photos never run concurrently: request threads only decode and enqueue, and a single worker
runs the network, which makes concurrent requests safe and memory predictable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from srn_deblur.deblurrer import Deblurrer
from srn_deblur.devices import resolve_device
from srn_deblur.network import parameter_count
from srn_deblur.webapp.uploads import Photo, encode_png

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class ServiceBusyError(RuntimeError):
    """The service cannot take a photo now: its queue is full or it has stopped (HTTP 503)."""


@dataclass(eq=False)
class Job:
    """One photo's way through the service; the worker updates it, request threads read it."""

    photo: Photo | None
    width: int
    height: int
    download_name: str
    passes_total: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    passes_done: int = 0
    error: str | None = None
    result: bytes | None = None
    seconds: float | None = None
    # For a video upload: the chosen frame's time stamp (s) and that frame as uploaded (PNG).
    frame_seconds: float | None = None
    source: bytes | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def progress(self) -> float:
        """Fraction of the network's passes done: whole image = 1 pass, else one per tile."""
        if self.status == DONE:
            return 1.0
        return min(self.passes_done / max(self.passes_total, 1), 1.0)


class ModelService:
    """Loads the network from `checkpoint` once and deblurs photos one at a time.

    Args:
        checkpoint: a `.ckpt` that `load_network` reads (it carries the network's config).
        device: `auto`, `cpu`, `cuda`, `cuda:1`, ...
        precision: `auto` (bf16 on CUDA and on CPUs with native bf16 units, else fp32), `fp32`,
            `bf16` or `fp16` (`srn_deblur.devices.resolve_precision`).
        channels_last: run the network in channels-last memory format.
        tile_size: side of the tiles used for photos larger than `whole_image_max_pixels`;
            it bounds the network's activation memory whatever the photo's size.
        tile_overlap: pixels shared by neighbouring tiles, blended with linear ramps.
        whole_image_max_pixels: photos up to this many pixels run in one pass (no tiling
            overhead); 1280x720 fits under the default.
        batch_tiles: tiles per pass, `auto` = 1 on the CPU, sized to free memory on a GPU.
        rounding: 8-bit output levels, `round` or `truncate` (as the release saved its PNGs).
        max_queue: photos allowed to wait behind the running one before new ones get 503.
        keep_results: finished jobs whose results stay fetchable (oldest dropped first).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "auto",
        tile_size: int = 512,
        tile_overlap: int = 64,
        whole_image_max_pixels: int = 1_048_576,
        max_queue: int = 8,
        keep_results: int = 16,
        precision: str = "auto",
        channels_last: bool = True,
        batch_tiles: int | str = "auto",
        rounding: str = "round",
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.deblurrer = Deblurrer(
            self.checkpoint,
            device,
            precision,
            channels_last,
            tile_size,
            tile_overlap,
            whole_image_max_pixels,
            batch_tiles,
            rounding,
        )
        self.device = self.deblurrer.device
        self.net = self.deblurrer.net
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.whole_image_max_pixels = whole_image_max_pixels
        self.max_queue = max_queue
        self.keep_results = keep_results
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._jobs_lock = threading.Lock()
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="srn-deblur-worker", daemon=True)
        self._worker.start()
        log.info("loaded %s on %s (%s parameters)", self.checkpoint, self.device, f"{self.parameters:,}")

    @property
    def parameters(self) -> int:
        return parameter_count(self.net)

    @property
    def alive(self) -> bool:
        return self._worker.is_alive()

    def info(self) -> dict[str, Any]:
        """What the health endpoint reports: the model, where it runs, how it tiles, the queue."""
        return {
            **self.deblurrer.info(),
            "queue": {"waiting": self._queue.qsize(), "capacity": self.max_queue},
            "worker_alive": self.alive,
        }

    def passes_for(self, width: int, height: int) -> int:
        """Tiles `deblur` runs for this size (the progress denominator): its own tile plan."""
        return self.deblurrer.plan(height, width).count

    def submit(self, photo: Photo) -> Job:
        """Queue a photo; raises `ServiceBusyError` when `max_queue` photos already wait."""
        width, height = photo.size
        job = Job(photo, width, height, photo.download_name, self.passes_for(width, height))
        job.frame_seconds = photo.seconds
        with self._jobs_lock:
            if self._closing or not self.alive:  # nobody would ever run it
                raise ServiceBusyError("the deblurring worker has stopped: restart the app (python app.py)")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise ServiceBusyError(
                    f"the server is busy: {self.max_queue} photos are already waiting. Try again in a minute."
                ) from None
            self._jobs[job.id] = job
            self._prune()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._jobs_lock:
            return self._jobs.get(job_id)

    def forget(self, job_id: str) -> None:
        """Drop a finished job and its result (the synchronous API does so once it has answered)."""
        with self._jobs_lock:
            self._jobs.pop(job_id, None)

    def queue_position(self, job: Job) -> int:
        """How many photos run or wait ahead of `job` (0 once it runs)."""
        if job.status != QUEUED:
            return 0
        with self._jobs_lock:
            ahead = 0
            for other in self._jobs.values():
                if other is job:
                    break
                ahead += other.status in (QUEUED, RUNNING)
        return ahead

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker after the jobs already queued; later submissions get `ServiceBusyError`."""
        with self._jobs_lock:
            if self._closing:
                return
            self._closing = True
        self._queue.put(None)
        self._worker.join(timeout)

    def _prune(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.finished.is_set()]
        for job_id in finished[: max(len(finished) - self.keep_results, 0)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status = RUNNING
        started = time.perf_counter()

        def count_tiles(done: int, total: int) -> None:
            job.passes_done = done

        photo, job.photo = job.photo, None  # the job no longer holds the pixels
        try:
            sharp = self.deblurrer(photo.pixels, on_tile=count_tiles)  # (H, W, 3) uint8
            job.result = encode_png(sharp, photo.icc_profile)
            if photo.seconds is not None:
                job.source = encode_png(photo.pixels, photo.icc_profile)
            job.status = DONE
        except Exception as exc:  # the worker must outlive any one photo, an out-of-memory included
            log.exception("job %s (%dx%d) failed", job.id, job.width, job.height)
            out_of_memory = isinstance(exc, torch.OutOfMemoryError)
            hint = " Lower service.tile_size or use a smaller photo." if out_of_memory else ""
            job.error = f"deblurring failed: {type(exc).__name__}: {exc}.{hint}"
            job.status = FAILED
        finally:
            job.seconds = time.perf_counter() - started
            job.finished.set()
        log.info(
            "job %s %s: %dx%d, %d passes, %.2f s",
            job.id,
            job.status,
            job.width,
            job.height,
            job.passes_total,
            job.seconds,
        )


__all__ = ["DONE", "FAILED", "QUEUED", "RUNNING", "Job", "ModelService", "ServiceBusyError", "resolve_device"]
