"""Export a trained SRN to ONNX for deployment, checked against eager PyTorch.

    python -m srn_deblur.export logs/train/runs/<run>/checkpoints/last.ckpt \
        --output srn.onnx --height 720 --width 1280

The exported graph takes RGB images `(N, 3, H, W)`, float32 in [0, 1], and returns the finest
estimate clamped to [0, 1], the same as `srn_deblur.inference.deblur` on a whole image. A
1-channel model (the paper's) runs R, G and B as three samples inside the graph. H and W are
fixed at export time (the network's padding and scale sizes are baked in); the batch size is
free. Photos of other sizes go through the exported model in tiles of its size, the way
`deblur` tiles them.

Needs the `export` extra: `pip install -e ".[export]"` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from srn_deblur.inference import load_network

# Inputs, outputs and the batch dimension of the exported graph, by name.
INPUT_NAME = "blurry"
OUTPUT_NAME = "sharp"


class ExportError(RuntimeError):
    """The exported model is missing its tools or does not reproduce the eager network."""


class DeployNet(nn.Module):
    """What a deployment runs: `(N, C, H, W)` blurry in [0, 1] -> finest estimate in [0, 1].

    Training needs every scale's estimate; a deployment needs only the last one, so the
    exported graph drops the coarse outputs and clamps as `deblur` does.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, blurry: Tensor) -> Tensor:
        return self.net(blurry)[-1].clamp(0.0, 1.0)  # (N, C, H, W)


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the {module!r} package: pip install -e \".[export]\""
        ) from exc


def export_onnx(net: nn.Module, path: str | Path, height: int, width: int, channels: int = 3) -> Path:
    """Write `net` as an ONNX graph for `(N, channels, height, width)` inputs; returns the path.

    Uses the `torch.export`-based exporter. The example batch has 2 images because
    `torch.export` fixes any dimension of size 1 to 1; with 2 the batch stays free.
    """
    if height < 1 or width < 1:
        raise ValueError(f"export size must be positive, got {height}x{width}")
    _require("onnx")
    _require("onnxscript")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    model = DeployNet(net).eval()
    param = next(net.parameters())
    example = torch.rand(2, channels, height, width, dtype=param.dtype, device=param.device)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"blurry": {0: torch.export.Dim("batch")}},
        verbose=False,
    )
    program.save(str(path))
    return path


def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for an exported model (`threads` = intra-op threads)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_input_shape(session: Any) -> tuple[Any, ...]:
    """The exported input shape, e.g. `('batch', 3, 720, 1280)`."""
    return tuple(session.get_inputs()[0].shape)


@torch.inference_mode()
def check_export(
    session: Any, net: nn.Module, batch: int = 1, tolerance: float = 1e-3, seed: int = 0
) -> float:
    """Max |onnxruntime - eager| over `batch` random images; raises `ExportError` above `tolerance`.

    Random inputs in [0, 1] exercise every pixel path; both sides run in float32 on the CPU.
    """
    _, channels, height, width = onnx_input_shape(session)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, height, width, generator=generator)
    expected = DeployNet(net).eval().float().cpu()(x).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f"exported model returned shape {got.shape}, eager {expected.shape}")
    diff = float(abs(got - expected).max())
    if not diff <= tolerance:
        raise ExportError(
            f"exported model differs from eager PyTorch by {diff:.3g} (tolerance {tolerance:g});"
            " do not deploy it. Re-export with the torch version the network was trained with."
        )
    return diff


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m srn_deblur.export",
        description="Export a trained SRN checkpoint to ONNX and check it against eager PyTorch.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by train.py, or a bare state dict")
    parser.add_argument("--output", type=Path, help="ONNX file to write (default: the checkpoint's, .onnx)")
    parser.add_argument("--height", type=int, default=720, help="input height baked into the graph (720)")
    parser.add_argument("--width", type=int, default=1280, help="input width baked into the graph (1280)")
    parser.add_argument(
        "--net-config",
        type=json.loads,
        help='network settings as JSON, for a bare state dict, e.g. \'{"channels": 3}\'',
    )
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max |onnx - eager| accepted (1e-3)")
    parser.add_argument("--check-batch", type=int, default=1, help="random images in the check (1)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    args = _parse_args(argv)
    net = load_network(args.checkpoint, net_config=args.net_config).float()
    output = args.output or args.checkpoint.with_suffix(".onnx")
    start = time.perf_counter()
    export_onnx(net, output, args.height, args.width)
    exported_s = time.perf_counter() - start
    session = onnx_session(output, torch.get_num_threads())
    diff = check_export(session, net, batch=args.check_batch, tolerance=args.tolerance)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB) in {exported_s:.1f} s")
    print(f"input  {INPUT_NAME}: {onnx_input_shape(session)} float32 RGB in [0, 1]")
    print(f"output {OUTPUT_NAME}: same shape, the finest estimate clamped to [0, 1]")
    print(f"check: max |onnxruntime - eager PyTorch| = {diff:.2e} (tolerance {args.tolerance:g})")
    return output


if __name__ == "__main__":
    main()
