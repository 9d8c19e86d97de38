"""Convert the official release's TensorFlow checkpoints to this framework's format.

    python -m srn_deblur.convert checkpoints/lstm/ lstm.ckpt

The model (`color`, `gray` or `lstm`) is recognised from the variables, every variable is mapped
(and nothing may be left over or missing), each tensor's checksum is verified, and the output
holds a TF-exact `SRNDeblurNet` (`tf_exact: true` in its config), so `evaluate.py`, `app.py` and
`load_network` take it as `ckpt_path=lstm.ckpt` with nothing else given. No TensorFlow needed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from srn_deblur.inference import save_network
from srn_deblur.network import SRNDeblurNet, parameter_count
from srn_deblur.tf_bundle import BundleEntry, BundleError, TensorBundle, find_checkpoint

# The release's `--model` choices as network arguments (3 ResBlocks, widths 32/64/128, 3 scales).
RELEASE_MODELS: dict[str, dict[str, object]] = {
    "color": {"channels": 3, "recurrence": "none"},
    "gray": {"channels": 1, "recurrence": "none"},
    "lstm": {"channels": 1, "recurrence": "lstm"},
}
_ROOT = "g_net/"
# Optimizer state a training checkpoint may also hold: not weights, skipped (and reported).
_TRAINING_STATE = re.compile(r"(/Adam(_\d+)?|^beta[12]_power(_\d+)?|^global_step)$")


class ConversionError(ValueError):
    """A checkpoint that is not one of the release's models; the message says what differs."""


def _scopes(lstm: bool) -> Iterator[tuple[str, str]]:
    """(TF scope under g_net/, PyTorch module of the shared `nets.0`) for every conv."""
    for level, block in ((1, "in_block"), (2, "eblock1"), (3, "eblock2")):
        yield f"enc{level}_1", f"{block}.conv"
        for i in range(3):  # enc{level}_2, _3, _4 are ResBlocks 0, 1, 2
            for conv in ("conv1", "conv2"):
                yield f"enc{level}_{i + 2}/{conv}", f"{block}.res_blocks.{i}.{conv}"
    if lstm:
        yield "convLSTM/LSTM_conv", "recurrent.conv"
    for level, block in ((3, "dblock1"), (2, "dblock2"), (1, "out_block")):
        for i, tf_index in enumerate((3, 2, 1)):  # the decoder counts down: dec3_3 runs first
            for conv in ("conv1", "conv2"):
                yield f"dec{level}_{tf_index}/{conv}", f"{block}.res_blocks.{i}.{conv}"
    yield "dec2_4", "dblock1.deconv"
    yield "dec1_4", "dblock2.deconv"
    yield "dec1_0", "out_block.conv"


def variable_map(model: str) -> dict[str, str]:
    """TF variable name -> PyTorch state-dict key, for one of RELEASE_MODELS."""
    lstm = RELEASE_MODELS[model]["recurrence"] == "lstm"
    names = {}
    for scope, module in _scopes(lstm):
        names[f"{_ROOT}{scope}/weights"] = f"nets.0.{module}.weight"
        names[f"{_ROOT}{scope}/biases"] = f"nets.0.{module}.bias"
    return names


def recognise(entries: Mapping[str, BundleEntry], source: Path) -> str:
    """The release model whose variables these are: input channels of enc1_1, and the ConvLSTM."""
    first = entries.get(f"{_ROOT}enc1_1/weights")
    if first is None or len(first.shape) != 4 or first.shape[2] not in (2, 6):
        found = "missing" if first is None else f"of shape {list(first.shape)}"
        raise ConversionError(
            f"{source} is not one of the release's SRN models (color, gray, lstm): its"
            f" {_ROOT}enc1_1/weights is {found}, where the release has [5, 5, 6 or 2, 32]"
        )
    if first.shape[2] == 6:
        return "color"
    return "lstm" if any(name.startswith(f"{_ROOT}convLSTM/") for name in entries) else "gray"


def _check_names(expected: set[str], found: set[str], model: str, source: Path) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        parts = [f"missing {len(missing)}: {', '.join(missing[:5])}"] if missing else []
        parts += [f"unexpected {len(unexpected)}: {', '.join(unexpected[:5])}"] if unexpected else []
        raise ConversionError(
            f"{source} looks like the release's {model!r} model but its variables differ"
            f" ({'; '.join(parts)}); it is another architecture or a modified release, which this"
            " converter does not map"
        )


@dataclass
class Conversion:
    """What one conversion did, for the command's report and for tests."""

    source: Path
    model: str
    network: SRNDeblurNet
    tensors: int
    skipped: list[str] = field(default_factory=list)


def convert_network(src: str | Path) -> Conversion:
    """Read the release checkpoint at `src` (folder or prefix) into a TF-exact SRNDeblurNet."""
    prefix = find_checkpoint(src)
    bundle = TensorBundle(prefix)
    source = bundle.index_path
    skipped = sorted(name for name in bundle.entries if _TRAINING_STATE.search(name))
    entries = {k: v for k, v in bundle.entries.items() if k not in skipped}
    model = recognise(entries, source)
    names = variable_map(model)
    _check_names(set(names), set(entries), model, source)

    net = SRNDeblurNet(**RELEASE_MODELS[model], tf_exact=True)
    own = net.state_dict()
    state = {}
    for tf_name, key in names.items():
        entry = entries[tf_name]
        if entry.dtype_name != "float32":
            raise ConversionError(
                f"{tf_name} in {source} is {entry.dtype_name}, but the release's weights are all float32;"
                " convert the original release files, or cast this checkpoint's weights to float32 first"
            )
        tensor = torch.from_numpy(bundle.read(tf_name).copy())
        # Conv [kh, kw, in, out] and transposed conv [kh, kw, out, in] both permute the same way,
        # with no spatial flip (both frameworks' transposed conv is the adjoint of one correlation).
        if tensor.dim() == 4:
            tensor = tensor.permute(3, 2, 0, 1).contiguous()
        if tensor.shape != own[key].shape:
            raise ConversionError(
                f"{tf_name} in {source} has shape {list(entry.shape)}, which does not fit the release's"
                f" {model!r} model ({key}: {list(own[key].shape)} in PyTorch's layout)"
            )
        state[key] = tensor
    net.load_state_dict(state)
    return Conversion(source=source, model=model, network=net.eval(), tensors=len(names), skipped=skipped)


def convert(src: str | Path, out: str | Path) -> Conversion:
    """Convert `src` and save it at `out` in the layout `srn_deblur.inference.load_network` reads."""
    conversion = convert_network(src)
    out = Path(out).expanduser()
    if out.is_dir():
        example = out / f"{conversion.model}.ckpt"
        raise ConversionError(f"{out} is a folder; name the output file, e.g. {example}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_network(conversion.network, out)
    return conversion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m srn_deblur.convert",
        description="Convert a release SRN-Deblur TensorFlow checkpoint (color, gray or lstm) to a .ckpt.",
    )
    parser.add_argument(
        "src", help="release model folder (checkpoints/lstm/) or checkpoint prefix (.../deblur.model-523000)"
    )
    parser.add_argument("out", help="output checkpoint, e.g. lstm.ckpt")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        result = convert(args.src, args.out)
    except (BundleError, ConversionError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    params = parameter_count(result.network)
    print(f"{result.source}: release model {result.model!r}, {result.tensors} tensors, {params:,} parameters")
    print(f"  all {result.tensors} checksums verified; wrote {args.out} (TF-exact network)"
          f" in {time.perf_counter() - start:.2f} s")
    if result.skipped:
        print(f"  skipped {len(result.skipped)} optimizer-state tensors (e.g. {result.skipped[0]})")
    print(f"Use it: python evaluate.py ckpt_path={args.out} ...  or  python app.py ckpt_path={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
