"""Speed, memory and FLOP/s of SRN: the plain implementation against each fast path.

    python benchmarks/bench.py                      # CPU preset (this machine)
    python benchmarks/bench.py --preset gpu         # one call on an H100/H200
    python benchmarks/bench.py --preset smoke       # seconds; what the tests run

Measures, for each (model, fast path) case:
- inference latency of a whole image (720x1280 by default) and of a 12 MP photo through
  tiled inference (`srn_deblur.inference.deblur`), with peak memory;
- training throughput: 256x256 crops per second, forward, multi-scale loss, backward,
  ConvLSTM clipping and the Adam step, as `SRNLitModule` does them under Lightning;
- achieved FLOP/s from conv MACs counted on the network (1 MAC = 2 FLOP; a training step
  counted as 3 forward passes), next to a matmul FLOP/s measured in the same run;
- data-loader samples per second;
- each fast path's agreement with the plain path (max |difference| of the output, or the
  relative difference of the first training loss).

Cases run interleaved (one call of each case per round, rotating order) after warm-ups, and
the median over rounds is reported, so a noisy shared machine slows every case alike and the
ratios to the plain path stay meaningful. CUDA is synchronised around every timed call.
Results print as a table and go to a JSON file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from srn_deblur.network import SRNConfig, SRNDeblurNet

# benchmarks/ is a folder of scripts: its helpers import by name when run or loaded from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import inference_case, measure_data_loader, training_case  # noqa: E402
from harness import FastPath, machine_info, matmul_flops, run_interleaved  # noqa: E402
from report import markdown_report, rich_table, row, targets  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Networks by name; SRNConfig's defaults are the release's `lstm` model (the paper's).
MODELS: dict[str, SRNConfig] = {
    "lstm": SRNConfig(),  # the paper's model: grey, ConvLSTM; colour images run as 3 planes
    "color_lstm": SRNConfig(channels=3),  # 3-channel with ConvLSTM (the CPU reference)
    "color": SRNConfig(channels=3, recurrence="none"),  # the release's default
    "gray": SRNConfig(recurrence="none"),
    # The CPU demo's network (configs/model/demo.yaml) and its earlier, deeper variant.
    "demo": SRNConfig(channels=3, widths=(16, 32, 64), num_res_blocks=0, residual=True),
    "demo_rb1": SRNConfig(channels=3, widths=(16, 32, 64), num_res_blocks=1, residual=True),
}


PATHS = {
    p.name: p
    for p in (
        # The plain implementation: float32, eager, channels-first, no_grad, no cudnn autotuning.
        FastPath("plain", cudnn_benchmark=False, inference_mode=False),
        FastPath("inference_mode", cudnn_benchmark=False),
        FastPath("cudnn_benchmark"),
        FastPath("channels_last", channels_last=True),
        FastPath("compile", compile_mode="default"),
        FastPath("bf16", bf16=True),
        FastPath("bf16_cl", channels_last=True, bf16=True),
        FastPath("compile_bf16_cl", channels_last=True, bf16=True, compile_mode="default"),
        # reduce-overhead = inductor + CUDA graphs (shapes are static in each case).
        FastPath("graphs_bf16_cl", channels_last=True, bf16=True, compile_mode="reduce-overhead"),
        # The exported ONNX graph under onnxruntime (CPU, float32).
        FastPath("onnx", onnx=True),
    )
}

PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a 2-core CPU shared with others (about 10 minutes on one thread). torch.compile is
    # left out here: on this CPU it costs minutes of compilation per case (add it with --train
    # color_lstm:plain,compile_bf16_cl on a quiet machine).
    "cpu": {
        "infer": ["color_lstm:plain,channels_last,bf16,bf16_cl,onnx"],
        "train": ["color_lstm:plain,channels_last,bf16_cl", "lstm:plain,bf16_cl"],
        "tiled": ["color_lstm:bf16_cl"],
        "train_batch": 4,
        "warmup": 1,
        "repeats": 2,
        "tiled_repeats": 1,
        "matmul_size": 4096,
        "loader_workers": 2,
        "loader_batches": 10,
    },
    "gpu": {
        "infer": [
            "lstm:plain,cudnn_benchmark,channels_last,bf16,bf16_cl,compile_bf16_cl,graphs_bf16_cl",
            "color_lstm:plain,bf16_cl,graphs_bf16_cl",
        ],
        "train": ["lstm:plain,bf16_cl,graphs_bf16_cl", "color_lstm:plain,bf16_cl"],
        "tiled": ["lstm:bf16_cl", "color_lstm:bf16_cl"],
        "train_batch": 16,
        "warmup": 3,
        "repeats": 15,
        "tiled_repeats": 2,
        "matmul_size": 8192,
        "loader_workers": 8,
        "loader_batches": 30,
    },
    "smoke": {
        "net": ["widths=[4,8,8]", "num_res_blocks=1"],
        "infer": ["color_lstm:plain,channels_last,bf16_cl", "lstm:plain,bf16"],
        "train": ["color_lstm:plain,bf16_cl"],
        "tiled": ["color_lstm:plain"],
        "infer_size": "48x80",
        "tiled_size": "96x128",
        "tile": 64,
        "tile_overlap": 16,
        "crop": 32,
        "train_batch": 2,
        "warmup": 1,
        "repeats": 2,
        "tiled_repeats": 1,
        "matmul_size": 128,
        "loader_workers": 0,
        "loader_batches": 2,
        "loader_size": "96x128",
        "loader_pairs": 2,
    },
}

_DEFAULTS: dict[str, Any] = {
    "net": [],
    "infer_size": "720x1280",
    "tiled_size": "3000x4000",  # 12 MP
    "tile": 512,
    "tile_overlap": 64,
    "crop": 256,
    "loader_size": "720x1280",
    "loader_pairs": 16,
}


# ----------------------------------------------------------------------------- building cases


def _parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise SystemExit(f"sizes are HEIGHTxWIDTH, e.g. 720x1280; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _parse_specs(specs: Sequence[str]) -> list[tuple[str, list[FastPath]]]:
    """`model:path,path` -> [(model, [FastPath, ...])], with unknown names refused by name."""
    parsed = []
    for spec in specs:
        if spec == "none":
            continue
        model, _, paths = spec.partition(":")
        if model not in MODELS:
            raise SystemExit(f"unknown model {model!r} in {spec!r}; choose from {sorted(MODELS)}")
        names = [p for p in paths.split(",") if p] or ["plain"]
        unknown = [p for p in names if p not in PATHS]
        if unknown:
            raise SystemExit(f"unknown fast path(s) {unknown} in {spec!r}; choose from {list(PATHS)}")
        parsed.append((model, [PATHS[p] for p in names]))
    return parsed


def _parse_net_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs for SRNDeblurNet, values parsed as JSON (e.g. `widths=[4,8,8]`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--net takes key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_network(model: str, overrides: dict[str, Any], seed: int = 0) -> SRNDeblurNet:
    torch.manual_seed(seed)
    return SRNDeblurNet(MODELS[model], **overrides)


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="defaults for a machine kind (cpu, gpu)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--infer", action="append", metavar="MODEL:PATH,...",
                        help=f"whole-image inference cases ('none' skips the task, as for --train and"
                        f" --tiled); models {sorted(MODELS)}, paths {list(PATHS)}")
    parser.add_argument("--train", action="append", metavar="MODEL:PATH,...", help="training-step cases")
    parser.add_argument("--tiled", action="append", metavar="MODEL:PATH,...", help="tiled 12 MP cases")
    parser.add_argument("--net", action="append", metavar="KEY=VALUE",
                        help="network overrides, e.g. widths=[4,8,8]")
    parser.add_argument("--infer-size", help="whole-image size HxW (720x1280)")
    parser.add_argument("--tiled-size", help="tiled photo size HxW (3000x4000 = 12 MP)")
    parser.add_argument("--tile", type=int, help="tile side for tiled inference (512)")
    parser.add_argument("--tile-overlap", type=int, help="tile overlap in pixels (64)")
    parser.add_argument("--crop", type=int, help="training crop side (256)")
    parser.add_argument("--train-batch", type=int, help="training batch (16 on GPU as in the paper)")
    parser.add_argument("--warmup", type=int, help="untimed calls per case before timing")
    parser.add_argument("--repeats", type=int, help="timed rounds; the median is reported")
    parser.add_argument("--tiled-repeats", type=int, help="timed rounds of the tiled cases")
    parser.add_argument("--matmul-size", type=int, help="side of the reference matmul")
    parser.add_argument("--loader-workers", type=int, help="data-loader workers (-1 skips the loader)")
    parser.add_argument("--loader-batches", type=int, help="batches timed from the loader")
    parser.add_argument("--loader-data", type=Path, help="GOPRO-layout folder (default: a synthetic set)")
    parser.add_argument("--loader-size", help="size HxW of generated GOPRO-like pairs (720x1280)")
    parser.add_argument("--loader-pairs", type=int, help="how many pairs to generate (16)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (torch's default)")
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results/);"
                        " a markdown copy of the tables goes next to it")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    preset = PRESETS[args.preset or ("gpu" if device.startswith("cuda") else "cpu")]
    for key, value in {**_DEFAULTS, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = device
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=200)
    overrides = _parse_net_overrides(args.net)
    specs = {task: _parse_specs(getattr(args, task)) for task in ("infer", "train", "tiled")}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = args.json or RESULTS_DIR / f"{device.type}-{stamp}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine_info(device), "args": {k: str(v) for k, v in vars(args).items()}, "rows": []
    }
    began = time.perf_counter()

    def save(phase: str) -> None:
        results["phases_done"] = results.get("phases_done", []) + [phase]
        out_path.write_text(json.dumps(results, indent=2, default=str))
        out_path.with_suffix(".md").write_text(markdown_report(results))
        console.print(f"[{time.perf_counter() - began:.0f} s] {phase} done -> {out_path}")

    matmul = {"fp32": matmul_flops(device, torch.float32, args.matmul_size),
              "bf16": matmul_flops(device, torch.bfloat16, args.matmul_size)}
    results["matmul_gflops"] = {k: v / 1e9 for k, v in matmul.items()}
    console.print(f"matmul {args.matmul_size}^2: fp32 {matmul['fp32'] / 1e9:.0f} GFLOP/s,"
                  f" bf16 {matmul['bf16'] / 1e9:.0f} GFLOP/s")
    save("matmul")

    with tempfile.TemporaryDirectory(prefix="srn-bench-") as tmp:
        phases = (
            ("infer", "whole-image inference", "images/s", args.repeats, args.warmup),
            ("train", "training steps", "crops/s", args.repeats, args.warmup),
            # A tiled photo runs many tiles, so its first call is already warm.
            ("tiled", "tiled inference", "images/s", args.tiled_repeats, 0),
        )
        for task, title, unit, repeats, warmup in phases:
            for model, paths in specs[task]:
                net = build_network(model, overrides)
                cases = []
                for path in paths:
                    if task == "train":
                        if path.onnx or path.name == "inference_mode":
                            raise SystemExit(f"{path.name} is an inference-only path; not a training case")
                        cases.append(training_case(model, net, path, device, args.train_batch, args.crop))
                    else:
                        size = _parse_size(args.infer_size if task == "infer" else args.tiled_size)
                        tile = args.tile if task == "tiled" else None
                        cases.append(inference_case(task, model, net, path, device, size, tile,
                                                    args.tile_overlap, Path(tmp)))
                run_interleaved(cases, device, warmup, repeats)
                plain = next((c for c in cases if c.path.name == "plain"), None)
                rows = [row(c, plain, matmul) for c in cases]
                results["rows"].extend(rows)
                shown = f"{title}, {model}"
                if task == "tiled":
                    shown += f", tiles {args.tile}/{args.tile_overlap}"
                console.print(rich_table(shown, rows, unit, device))
                del cases, plain
                save(f"{task} {model}")

    if args.loader_workers >= 0:
        channels = 1 if any(m in ("lstm", "gray") for m, _ in specs["train"]) else 3
        try:
            loader = results["loader"] = measure_data_loader(
                args.loader_workers, args.train_batch, args.crop, args.loader_batches, args.loader_data,
                _parse_size(args.loader_size), args.loader_pairs, channels, pin_memory=device.type == "cuda",
            )
        except ModuleNotFoundError as exc:  # e.g. a GPU image without the project's data dependencies
            results["loader_error"] = f"loader not measured: {exc}; pip install -e . (albumentations, opencv)"
            console.print(results["loader_error"])
            loader = None
        if loader:
            console.print(f"data loader, {loader['workers']} workers, {loader['data']}: plain (decode"
                          f" PNGs) {loader['plain']['samples_per_s']:.1f} samples/s, fast path (memory-mapped"
                          f" cache) {loader['fast']['samples_per_s']:.1f} samples/s")
        save("loader")

    results["targets"] = targets(results)
    for line in results["targets"]:
        console.print(line)
    save("targets")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
