"""Time photos through the web app's HTTP API and read the server's peak memory.

Starts `python app.py` in its own process with a full-size SRN (random weights: no trained
full-size model exists here; speed and memory do not depend on the weights' values), posts
a 1280x720 and a 12 MP (4000x3000) JPEG to `POST /api/deblur`, and prints one row per photo:
end-to-end seconds (upload, decode, inference, PNG encode, download), the server's own
seconds, the number of network passes (tiles), and the server's peak resident memory while
that photo ran (Linux VmHWM, reset before each photo through /proc/<pid>/clear_refs).

    python benchmarks/bench_app.py                     # srn_color, 512-pixel tiles
    python benchmarks/bench_app.py --model srn_lstm --sizes 1280x720 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hydra
import numpy as np
import requests
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from rich.console import Console
from rich.table import Table
from skimage import data as skdata

from srn_deblur.inference import save_network
from srn_deblur.network import parameter_count

REPO = Path(__file__).resolve().parents[1]


def build_checkpoint(model: str, path: Path, seed: int = 0) -> int:
    """Save a randomly initialised `configs/model/<model>.yaml` network as train.py would."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"])
    torch.manual_seed(seed)
    net = hydra.utils.instantiate(cfg.model.net)
    save_network(net, path)
    return parameter_count(net)


def sample_photo(width: int, height: int) -> bytes:
    """A natural photo (scikit-image's chelsea) resized to the size, as a phone-like JPEG."""
    image = Image.fromarray(skdata.chelsea()).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with code {server.returncode} before answering")
        try:
            return requests.get(f"{url}/api/health", timeout=5).json()
        except requests.ConnectionError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer {url}/api/health within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="srn_color", help="configs/model/ name: srn_color, srn_lstm, srn_gray"
    )
    parser.add_argument("--sizes", nargs="+", default=["1280x720", "4000x3000"], help="WIDTHxHEIGHT photos")
    parser.add_argument("--repeats", type=int, default=1, help="requests per size (the table shows medians)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        ckpt = Path(tmp) / f"{args.model}_random.ckpt"
        parameters = build_checkpoint(args.model, ckpt)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "app.py",
                f"ckpt_path={ckpt}",
                f"port={port}",
                f"service.device={args.device}",
                f"service.tile_size={args.tile_size}",
                f"hydra.run.dir={tmp}/run",
            ],
            cwd=REPO,
        )
        try:
            health = wait_healthy(url, server, timeout=300)
            loaded_mib = (proc_status_kib(server.pid, "VmRSS") or 0) / 1024
            rows = []
            for size in args.sizes:
                width, height = (int(v) for v in size.lower().split("x"))
                photo = sample_photo(width, height)
                totals, server_seconds, peaks = [], [], []
                for _ in range(args.repeats):
                    peak_reset = reset_peak(server.pid)
                    start = time.perf_counter()
                    files = {"image": (f"{size}.jpg", photo, "image/jpeg")}
                    response = requests.post(f"{url}/api/deblur", files=files, timeout=7200)
                    totals.append(time.perf_counter() - start)
                    response.raise_for_status()
                    out = Image.open(io.BytesIO(response.content))
                    if out.size != (width, height):
                        raise AssertionError(f"{size}: the app returned {out.size[0]}x{out.size[1]}")
                    server_seconds.append(float(response.headers["X-Deblur-Seconds"]))
                    peaks.append((proc_status_kib(server.pid, "VmHWM") or 0) / 1024)
                rows.append(
                    {
                        "size": size,
                        "megapixels": width * height / 1e6,
                        "upload_mb": len(photo) / 1e6,
                        "passes": int(response.headers["X-Deblur-Passes"]),
                        "end_to_end_s": float(np.median(totals)),
                        "server_s": float(np.median(server_seconds)),
                        "peak_rss_mib": max(peaks),
                        "peak_is_per_photo": peak_reset,
                        "repeats": args.repeats,
                    }
                )
        finally:
            server.terminate()
            server.wait(30)

    device = health["model"]["device"]
    table = Table(
        title=f"{args.model} ({parameters:,} parameters, random weights) through POST /api/deblur on {device}"
    )
    for column in ("photo", "MP", "JPEG MB", "passes", "end-to-end s", "server s", "server peak RSS MiB"):
        table.add_column(column, justify="right")
    for r in rows:
        peak = f"{r['peak_rss_mib']:.0f}" + ("" if r["peak_is_per_photo"] else " (since start)")
        table.add_row(
            r["size"],
            f"{r['megapixels']:.1f}",
            f"{r['upload_mb']:.2f}",
            str(r["passes"]),
            f"{r['end_to_end_s']:.1f}",
            f"{r['server_s']:.1f}",
            peak,
        )
    console = Console()
    console.print(table)
    console.print(
        f"server RSS after loading the model: {loaded_mib:.0f} MiB; tile_size {args.tile_size}, overlap"
        f" {health['model']['tile_overlap']}; torch {torch.__version__},"
        f" {torch.get_num_threads()} CPU threads"
    )
    if args.json:
        summary = {"model": args.model, "parameters": parameters, "device": device, "rows": rows}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
