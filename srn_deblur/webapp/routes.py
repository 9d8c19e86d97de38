"""The Flask app: the page, the synchronous API, the job API (for progress) and health.

Endpoints (all errors are JSON `{"error": "..."}` with a 4xx/5xx status):

    GET  /                       the page
    GET  /api/health             the loaded model, device, tiling, limits and queue
    POST /api/deblur             form field `image` -> the sharp PNG (waits for the result)
    POST /api/jobs               form field `image` -> 202 + job JSON (poll it for progress)
    GET  /api/jobs/<id>          the job's status and progress
    GET  /api/jobs/<id>/result   the sharp PNG once the job is done
    GET  /api/jobs/<id>/source   for a video: its chosen frame as uploaded (PNG)

The field `image` also takes a short video: its sharpest frame is deblurred, and the job's
`frame_seconds` says where in the clip it was.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from srn_deblur.video import VIDEO_SUFFIXES
from srn_deblur.webapp.service import DONE, FAILED, Job, ModelService, ServiceBusyError
from srn_deblur.webapp.uploads import (
    ACCEPTED_FORMATS,
    Photo,
    UploadError,
    decode_upload,
    decode_video_upload,
    looks_like_video,
    too_large_message,
)

# The form field that carries the photo, in the page and in the API.
FIELD = "image"
# Multipart framing around the file: boundaries, headers, the file name.
_MULTIPART_SLACK = 64 * 1024


def request_body_limit(max_upload_bytes: int) -> int:
    """The largest request body worth reading for an upload of at most `max_upload_bytes`."""
    return max_upload_bytes + _MULTIPART_SLACK


def create_app(
    service: ModelService,
    max_upload_bytes: int = 50_000_000,
    max_pixels: int = 40_000_000,
    max_video_bytes: int = 100_000_000,
    max_video_seconds: float = 30.0,
) -> Flask:
    """Build the app around an already loaded `service` (tests pass a tiny one).

    Args:
        service: the model service that runs every photo.
        max_upload_bytes: largest accepted photo file (413 above it).
        max_pixels: largest accepted width x height (413 above it), checked before decoding.
        max_video_bytes: largest accepted video file (413 above it).
        max_video_seconds: longest accepted clip (413 above it), from its header.
    """
    app = Flask(__name__)
    largest = max(max_upload_bytes, max_video_bytes)
    app.config["MAX_CONTENT_LENGTH"] = request_body_limit(largest)
    limits = {
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_video_bytes": max_video_bytes,
        "max_video_seconds": max_video_seconds,
        "formats": sorted(ACCEPTED_FORMATS.values()),
        "video_suffixes": list(VIDEO_SUFFIXES),
    }

    def read_photo() -> Photo:
        if not request.mimetype.startswith("multipart/form-data"):
            raise UploadError(
                f"send the photo as multipart/form-data in the field '{FIELD}' (curl -F {FIELD}=@photo.jpg),"
                f" not as {request.mimetype or 'a body without a content type'}"
            )
        upload = request.files.get(FIELD)
        if upload is None:
            sent = ", ".join(repr(s) for s in sorted({*request.files, *request.form})) or "no fields"
            raise UploadError(
                f"no file in the form field '{FIELD}'; the request had {sent}:"
                f" send the photo as {FIELD}=@photo.jpg"
            )
        data = upload.stream.read(largest + 1)
        name = upload.filename or ""
        if data and looks_like_video(data, name):
            return decode_video_upload(data, name, max_video_bytes, max_video_seconds, max_pixels)
        return decode_upload(data, name, max_upload_bytes, max_pixels)

    def job_json(job: Job) -> dict[str, Any]:
        return {
            "id": job.id,
            "status": job.status,
            "progress": round(job.progress, 4),
            "passes_done": job.passes_done,
            "passes_total": job.passes_total,
            "queue_position": service.queue_position(job),
            "width": job.width,
            "height": job.height,
            "seconds": job.seconds,
            "error": job.error,
            "download_name": job.download_name,
            "frame_seconds": job.frame_seconds,
            "status_url": url_for("job_status", job_id=job.id),
            "result_url": url_for("job_result", job_id=job.id),
            "source_url": url_for("job_source", job_id=job.id) if job.frame_seconds is not None else None,
        }

    def png_response(job: Job, data: bytes | None = None) -> Response:
        response = Response(job.result if data is None else data, mimetype="image/png")
        response.headers["Content-Disposition"] = f'attachment; filename="{job.download_name}"'
        response.headers["X-Deblur-Seconds"] = f"{job.seconds:.3f}"
        response.headers["X-Deblur-Passes"] = str(job.passes_total)
        if job.frame_seconds is not None:
            response.headers["X-Deblur-Frame-Seconds"] = f"{job.frame_seconds:.3f}"
        return response

    def find_job(job_id: str) -> Job:
        job = service.get(job_id)
        if job is None:
            raise UploadError(
                f"no job {job_id!r}: it never existed or its result expired; upload the photo again", 404
            )
        return job

    @app.get("/")
    def index() -> str:
        return render_template("index.html", limits=limits, model=service.info())

    @app.get("/api/health")
    def health() -> Response:
        ok = service.alive
        body = {"status": "ok" if ok else "worker stopped", "model": service.info(), "limits": limits}
        return jsonify(body), (200 if ok else 503)

    @app.post("/api/deblur")
    def deblur_now() -> Response:
        job = service.submit(read_photo())
        job.finished.wait()
        service.forget(job.id)
        if job.status == FAILED:
            return jsonify({"error": job.error}), 500
        return png_response(job)

    @app.post("/api/jobs")
    def create_job() -> tuple[Response, int, dict[str, str]]:
        job = service.submit(read_photo())
        body = job_json(job)
        return jsonify(body), 202, {"Location": body["status_url"]}

    @app.get("/api/jobs/<job_id>")
    def job_status(job_id: str) -> Response:
        return jsonify(job_json(find_job(job_id)))

    @app.get("/api/jobs/<job_id>/result")
    def job_result(job_id: str) -> Response:
        job = find_job(job_id)
        if job.status == FAILED:
            return jsonify({"error": job.error}), 500
        if job.status != DONE:
            poll = url_for("job_status", job_id=job_id)
            return jsonify({"error": f"job {job_id} is {job.status}, not done yet: poll {poll}"}), 409
        return png_response(job)

    @app.get("/api/jobs/<job_id>/source")
    def job_source(job_id: str) -> Response:
        job = find_job(job_id)
        if job.frame_seconds is None:
            return jsonify({"error": f"job {job_id} is a photo: the page already has it"}), 404
        if job.status != DONE:
            return jsonify({"error": f"job {job_id} is {job.status}: its frame comes with the result"}), 409
        return png_response(job, job.source)

    @app.errorhandler(UploadError)
    def upload_error(exc: UploadError) -> tuple[Response, int]:
        return jsonify({"error": str(exc)}), exc.status

    @app.errorhandler(ServiceBusyError)
    def busy(exc: ServiceBusyError) -> tuple[Response, int, dict[str, str]]:
        return jsonify({"error": str(exc)}), 503, {"Retry-After": "30"}

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        # Flask refused the body before reading it, so the file name is unknown.
        return jsonify({"error": too_large_message("", max_upload_bytes)}), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response | tuple[Response, int]:
        if not request.path.startswith("/api/"):
            return exc.get_response()
        return jsonify({"error": f"{exc.name}: {exc.description}"}), exc.code or 500

    return app


__all__ = ["FIELD", "create_app", "request_body_limit"]
