"""Benchmark the fast inference path and deblur.py's overheads (not a test; prints a table).

    python benchmarks/bench_deblur.py --checkpoints demo=path/a.ckpt lstm=path/b.ckpt \
        [--images 4] [--crop 256] [--video-frames 6] [--repeats 2] [--app-repeats 6] \
        [--out benchmarks/results/cpu-deblur.json]

1. bf16 against fp32 on the synthetic test set (`data/synthetic/test`, made by `python train.py`)
   for each checkpoint: the PSNR difference on 8-bit outputs and the speed ratio (`--crop`: centre
   crops, for full-size networks where bf16 is emulated).
2. deblur.py's pipeline (runner.run) on a generated 720p video: frames per second, and the
   overhead (decoding, encoding, conversions) against the bare forward of the same path.
3. The web app's 720p photo end to end (upload, decode, queue, deblur, PNG) against the bare forward,
   the two alternating so that both see the same machine; the decode and PNG stages timed alone.
Ratios are measured in one run, each repeated; the spread is the min and max over repeats.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.image_io import read_rgb, to_tensor  # noqa: E402
from srn_deblur.deblurrer import Deblurrer  # noqa: E402
from srn_deblur.runner import RunOptions, run  # noqa: E402
from srn_deblur.webapp import ModelService, create_app  # noqa: E402
from srn_deblur.webapp.uploads import decode_upload, encode_png  # noqa: E402

HD = (720, 1280)


def _centre(image: np.ndarray, crop: int | None) -> np.ndarray:
    if crop is None:
        return image
    top, left = max(0, (image.shape[0] - crop) // 2), max(0, (image.shape[1] - crop) // 2)
    return image[top : top + crop, left : left + crop]


def _pairs(root: Path, limit: int, crop: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`limit` test pairs, spread evenly over the sorted set."""
    blurs = sorted(root.glob("*/blur/*.png"))
    if not blurs:
        raise SystemExit(
            f"no test pairs under {root}: run `python train.py` once to generate the synthetic set"
        )
    blurs = blurs[:: max(1, len(blurs) // limit)][:limit]
    return [
        (_centre(read_rgb(b), crop), _centre(read_rgb(b.parent.parent / "sharp" / b.name), crop))
        for b in blurs
    ]


def precision_rows(name: str, ckpt: str, pairs, repeats: int) -> dict:
    runs = {}
    for precision in ("fp32", "bf16"):
        model = Deblurrer(ckpt, device="cpu", precision=precision, channels_last=True)
        model(pairs[0][0][:64, :64])  # warm-up
        seconds, psnrs = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            outs = [model(blur) for blur, _ in pairs]
            seconds.append(time.perf_counter() - started)
        psnrs = [
            peak_signal_noise_ratio(sharp, out, data_range=255)
            for (_, sharp), out in zip(pairs, outs, strict=True)
        ]
        runs[precision] = {"seconds": seconds, "psnr": float(np.mean(psnrs))}
    ratios = [f / b for f, b in zip(runs["fp32"]["seconds"], runs["bf16"]["seconds"], strict=True)]
    return {
        "checkpoint": name,
        "images": len(pairs),
        "psnr_fp32": runs["fp32"]["psnr"],
        "psnr_bf16": runs["bf16"]["psnr"],
        "psnr_diff": runs["bf16"]["psnr"] - runs["fp32"]["psnr"],
        "speed_bf16_over_fp32": [min(ratios), max(ratios)],
        "seconds_fp32": runs["fp32"]["seconds"],
        "seconds_bf16": runs["bf16"]["seconds"],
    }


def _hd_frame(seed: int) -> np.ndarray:
    still = cv2.resize(skdata.astronaut(), HD[::-1], interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(still, (0, 0), 1.0 + 0.2 * seed)


def video_rows(ckpt: str, frames: int, repeats: int, folder: Path) -> dict:
    clip = folder / "hd.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = HD[1], HD[0], "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(_hd_frame(i), format="rgb24")))
        out.mux(stream.encode(None))
    model = Deblurrer(ckpt, device="cpu")
    tensors = [to_tensor(_hd_frame(i))[None] for i in range(frames)]
    model.tensor(tensors[0][..., :64, :64])  # warm-up
    totals, bares = [], []
    for r in range(repeats):
        started = time.perf_counter()
        run(str(clip), folder / f"out{r}", model, RunOptions(progress=False))
        totals.append(time.perf_counter() - started)
        started = time.perf_counter()
        for x in tensors:
            model.tensor(x)
        bares.append(time.perf_counter() - started)
    overheads = [1 - b / t for b, t in zip(bares, totals, strict=True)]
    return {
        "frames": frames,
        "size": f"{HD[1]}x{HD[0]}",
        "precision": model.precision,
        "fps": [frames / max(totals), frames / min(totals)],
        "overhead_share": [min(overheads), max(overheads)],
        "seconds_total": totals,
        "seconds_bare": bares,
    }


def app_rows(ckpt: str, repeats: int) -> dict:
    service = ModelService(ckpt, device="cpu")
    client = create_app(service).test_client()
    buffer = io.BytesIO()
    Image.fromarray(_hd_frame(0)).save(buffer, format="PNG")
    upload = buffer.getvalue()
    x = to_tensor(_hd_frame(0))[None]
    service.deblurrer.tensor(x[..., :64, :64])  # warm-up

    def end_to_end() -> float:
        started = time.perf_counter()
        body = {"image": (io.BytesIO(upload), "hd.png")}
        response = client.post("/api/deblur", data=body, content_type="multipart/form-data")
        assert response.status_code == 200, response.get_json()
        return time.perf_counter() - started

    def bare() -> float:
        started = time.perf_counter()
        service.deblurrer.tensor(x)
        return time.perf_counter() - started

    ends, bares, decodes, encodes = [], [], [], []
    try:
        for r in range(repeats):
            if r % 2 == 0:
                ends.append(end_to_end())
                bares.append(bare())
            else:
                bares.append(bare())
                ends.append(end_to_end())
            started = time.perf_counter()
            photo = decode_upload(upload, "hd.png", len(upload), HD[0] * HD[1])
            decodes.append(time.perf_counter() - started)
            started = time.perf_counter()
            encode_png(photo.pixels)
            encodes.append(time.perf_counter() - started)
    finally:
        service.close(timeout=30)
    ratios = [e / b for e, b in zip(ends, bares, strict=True)]
    return {
        "end_to_end_over_bare": [min(ratios), float(np.median(ratios)), max(ratios)],
        "seconds_end_to_end": ends,
        "seconds_bare": bares,
        "seconds_decode_upload": decodes,
        "seconds_encode_png": encodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoints", nargs="+", required=True, help="name=path.ckpt; the first serves video/app"
    )
    parser.add_argument("--test-dir", default="data/synthetic/test")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--crop", type=int, default=None, help="centre-crop side, precision rows")
    parser.add_argument("--video-frames", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--app-repeats", type=int, default=6, help="end-to-end/bare pairs for the app")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    checkpoints = dict(item.split("=", 1) for item in args.checkpoints)
    pairs = _pairs(Path(args.test_dir), args.images, args.crop)
    result = {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    result["precision"] = [precision_rows(n, p, pairs, args.repeats) for n, p in checkpoints.items()]
    first = next(iter(checkpoints.values()))
    with tempfile.TemporaryDirectory() as folder:
        result["video"] = video_rows(first, args.video_frames, args.repeats, Path(folder))
    result["app"] = app_rows(first, args.app_repeats)
    print("| checkpoint | images | PSNR fp32 | PSNR bf16 | diff | bf16 speed (fp32 time / bf16 time) |")
    print("|---|---|---|---|---|---|")
    for row in result["precision"]:
        lo, hi = row["speed_bf16_over_fp32"]
        print(
            f"| {row['checkpoint']} | {row['images']} | {row['psnr_fp32']:.3f} | {row['psnr_bf16']:.3f} |"
            f" {row['psnr_diff']:+.4f} dB | {lo:.2f}-{hi:.2f}x |"
        )
    v, a = result["video"], result["app"]
    print(
        f"\nvideo {v['size']}, {v['frames']} frames ({v['precision']}):"
        f" {v['fps'][0]:.2f}-{v['fps'][1]:.2f} fps,"
        f" overhead {100 * v['overhead_share'][0]:.1f}-{100 * v['overhead_share'][1]:.1f}% of the total"
    )
    lo, mid, hi = a["end_to_end_over_bare"]
    print(
        f"web app 720p photo: end to end / bare forward = {lo:.2f}-{hi:.2f}x (median {mid:.2f}x);"
        f" decode {1000 * float(np.median(a['seconds_decode_upload'])):.0f} ms,"
        f" PNG {1000 * float(np.median(a['seconds_encode_png'])):.0f} ms,"
        f" bare forward {1000 * float(np.median(a['seconds_bare'])):.0f} ms (medians)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
