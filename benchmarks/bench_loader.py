"""Training-loader throughput: the plain loader (decode two PNGs per crop) vs the fast path
(decode once into a memory-mapped cache, `data.cache_dir`), in samples per second per worker.

    python benchmarks/bench_loader.py                         # a generated GOPRO-like set
    python benchmarks/bench_loader.py --data-dir /data/GOPRO_Large --workers 0 4 8

Without --data-dir it writes GOPRO-sized (1280x720) motion-blurred PNG pairs made from
scikit-image's bundled photos, upscaled, with mild sensor noise so they compress like camera
frames. Both paths read from the page cache once warmed up: the numbers compare decoding
cost, not disk speed. Timings on a shared machine are noisy; compare rows of one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.gopro import GoProDataModule  # noqa: E402
from datamodules.image_io import write_rgb  # noqa: E402
from datamodules.motion_blur import blur_image  # noqa: E402
from datamodules.synthetic import TRAIN_IMAGES, load_bundled_image  # noqa: E402


def make_gopro_like_set(
    root: str | Path, pairs: int = 16, size: tuple[int, int] = (720, 1280), seed: int = 0
) -> Path:
    """Write `root/train/<photo>/{blur,sharp}/<frame>.png` pairs of `size` (H, W), and one
    pair under `root/test/` (the datamodule wants both splits); returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = size
    for i in range(pairs + 1):
        split = "train" if i < pairs else "test"
        name = TRAIN_IMAGES[i % len(TRAIN_IMAGES)]
        photo = cv2.resize(
            load_bundled_image(name, max(size)), (width, height), interpolation=cv2.INTER_CUBIC
        )
        noisy = np.clip(photo + rng.normal(0.0, 2.0, photo.shape), 0, 255).astype(np.uint8)
        blurry = blur_image(noisy, rng)
        frame = f"{i:06d}.png"
        write_rgb(root / split / name / "sharp" / frame, noisy)
        write_rgb(root / split / name / "blur" / frame, blurry)
    return root


def measure_loader(
    data_dir: str | Path,
    *,
    workers: int = 0,
    batch: int = 16,
    crop: int = 256,
    batches: int = 20,
    cache_dir: str | Path | None = None,
    channels: int = 3,
    pin_memory: bool = False,
    warmup: int = 2,
) -> dict[str, Any]:
    """Samples per second of `GoProDataModule`'s training loader over `data_dir/train`.

    `cache_dir` selects the fast path; its one-time build is timed separately (`cache_build_s`)
    and excluded from the rate. The first `warmup` batches (worker start-up) are not timed.
    `samples_per_s_per_worker` divides by the processes that decode (the main one when
    `workers` is 0).
    """
    datamodule = GoProDataModule(
        data_dir,
        batch_size=batch,
        crop_size=crop,
        train_channels=channels,
        num_workers=workers,
        pin_memory=pin_memory,
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    start = time.perf_counter()
    datamodule.prepare_data()
    build_s = time.perf_counter() - start if cache_dir is not None else 0.0
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    if len(loader) == 0:
        raise ValueError(f"no full batch of {batch} in {data_dir}: generate more --pairs or lower --batch")

    def epochs_forever(batches):
        while True:
            yield from batches

    stream = epochs_forever(loader)
    for _ in range(warmup):
        next(stream)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += next(stream)[0].shape[0]
    rate = seen / (time.perf_counter() - start)
    del stream, loader  # stop persistent workers
    return {
        "mode": "memory-mapped cache" if cache_dir is not None else "decode PNGs",
        "samples_per_s": rate,
        "samples_per_s_per_worker": rate / max(1, workers),
        "workers": workers,
        "batch": batch,
        "crop": crop,
        "cache_build_s": build_s,
        "source": "bench_loader.measure_loader (GoProDataModule)",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, help="a GOPRO-layout folder (default: generate one)")
    parser.add_argument("--pairs", type=int, default=16, help="pairs to generate")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is shown")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="srn-bench-loader-") as tmp:
        data_dir = args.data_dir or make_gopro_like_set(Path(tmp) / "gopro_like", args.pairs)
        pngs = sorted((Path(data_dir) / "train").glob("*/*/*.png"))
        png_mb = statistics.fmean(p.stat().st_size for p in pngs) / 1e6 if pngs else float("nan")
        height, width = cv2.imread(str(pngs[0])).shape[:2] if pngs else (0, 0)
        print(f"data: {data_dir} ({len(pngs) // 2} pairs of {width}x{height}, {png_mb:.2f} MB per PNG)")
        print(
            f"batch {args.batch} of {args.crop}x{args.crop} crops, {args.batches} batches per timing,"
            f" median of {args.repeats}"
        )
        print()
        print("| loader | workers | samples/s | samples/s per worker | one-time cache build |")
        print("|---|---:|---:|---:|---:|")
        cache_dir = Path(tmp) / "cache"
        for workers in args.workers:
            rates = {}
            for mode, cache in (("decode PNGs", None), ("memory-mapped cache", cache_dir)):
                reused = cache is not None and any(cache_dir.glob("*.u8"))
                runs = [
                    measure_loader(
                        data_dir,
                        workers=workers,
                        batch=args.batch,
                        crop=args.crop,
                        batches=args.batches,
                        cache_dir=cache,
                    )
                    for _ in range(args.repeats)
                ]
                rate = statistics.median(r["samples_per_s"] for r in runs)
                rates[mode] = rate
                build = "" if cache is None else "reused" if reused else f"{runs[0]['cache_build_s']:.1f} s"
                print(f"| {mode} | {workers} | {rate:.1f} | {rate / max(1, workers):.1f} | {build} |")
            speedup = rates["memory-mapped cache"] / rates["decode PNGs"]
            print(f"| speed-up, {workers} workers | | x{speedup:.1f} | | |")


if __name__ == "__main__":
    main()
