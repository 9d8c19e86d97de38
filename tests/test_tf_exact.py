"""Converted release checkpoints, written by TensorFlow itself, reproduce TensorFlow's outputs.

One TensorFlow subprocess per session (tests/tf_reference.py in `.venv-tf`, which
`scripts/setup.sh` creates) writes the three models in the release's format with random
weights and runs them; here they are converted without TensorFlow and compared scale by scale.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from srn_deblur.convert import ConversionError, convert, convert_network
from srn_deblur.inference import load_network
from srn_deblur.network import SRNDeblurNet
from srn_deblur.tf_bundle import BundleError, TensorBundle

ROOT = Path(__file__).resolve().parents[1]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
PREFIX = "deblur.model-523000"
# The released files' sizes (docs/release_models.md): a Saver-written bundle of the same variables matches.
RELEASE_DATA_BYTES = {"color": 27_525_004, "gray": 27_505_796, "lstm": 32_226_436}
RELEASE_TENSORS = {"color": 84, "gray": 84, "lstm": 86}
CHANNELS = {"color": 3, "gray": 1, "lstm": 1}
CASES = {"m16": (48, 64), "odd": (37, 50)}  # a multiple of 16, and one the network must pad
TOLERANCE = 2e-5


@pytest.fixture(scope="session")
def tf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not TF_PYTHON.is_file():
        pytest.fail(f"{TF_PYTHON} is missing: run `bash scripts/setup.sh`, which creates the TensorFlow venv")
    workdir = tmp_path_factory.mktemp("tf")
    rng = np.random.default_rng(0)
    inputs = {
        f"{model}/{case}": rng.random((1 if c == 3 else 2, h, w, c), dtype=np.float32)
        for model, c in CHANNELS.items()
        for case, (h, w) in CASES.items()
    }
    np.savez(workdir / "inputs.npz", **inputs)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [str(TF_PYTHON), str(ROOT / "tests" / "tf_reference.py"), str(workdir)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def test_framework_environment_has_no_tensorflow():
    assert importlib.util.find_spec("tensorflow") is None, "TensorFlow belongs in .venv-tf only"


@pytest.mark.parametrize("model", list(CHANNELS))
def test_tensorflow_wrote_the_release_format(tf_dir, model):
    bundle = TensorBundle(tf_dir / model / PREFIX)
    assert len(bundle.entries) == RELEASE_TENSORS[model]
    assert bundle.data_path(0).stat().st_size == RELEASE_DATA_BYTES[model]
    assert all(e.dtype_name == "float32" for e in bundle.entries.values())


@pytest.mark.parametrize("model", list(CHANNELS))
def test_converted_network_reproduces_tensorflow_on_every_scale(tf_dir, tmp_path, model):
    result = convert(tf_dir / model, tmp_path / f"{model}.ckpt")
    assert result.model == model
    net = load_network(tmp_path / f"{model}.ckpt")  # the checkpoint alone rebuilds the network
    assert net.config["tf_exact"] and net.config["channels"] == CHANNELS[model]
    pytorch_conventions = SRNDeblurNet(**{**net.config, "tf_exact": False}).eval()
    pytorch_conventions.load_state_dict(net.state_dict())
    inputs, outputs = np.load(tf_dir / "inputs.npz"), np.load(tf_dir / "outputs.npz")
    for case in CASES:
        x = torch.from_numpy(inputs[f"{model}/{case}"]).permute(0, 3, 1, 2)  # NHWC -> NCHW
        with torch.no_grad():
            ours, other = net(x), pytorch_conventions(x)
        for level, (estimate, wrong) in enumerate(zip(ours, other, strict=True)):
            reference = outputs[f"{model}/{case}/{level}"].transpose(0, 3, 1, 2)
            assert estimate.shape == reference.shape
            assert relative_error(estimate.numpy(), reference) < TOLERANCE, (model, case, level)
            # The same weights under PyTorch's conventions are far off: the test can fail.
            assert relative_error(wrong.numpy(), reference) > 1e-2


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_corrupt_byte_in_the_data_is_caught_by_its_checksum(tf_dir, tmp_path):
    folder = _copy(tf_dir / "lstm", tmp_path / "lstm")
    entry = TensorBundle(folder / PREFIX).entries["g_net/convLSTM/LSTM_conv/weights"]
    data = folder / f"{PREFIX}.data-00000-of-00001"
    with data.open("r+b") as f:
        f.seek(entry.offset + entry.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))  # one bit of one float
    with pytest.raises(BundleError, match=r"LSTM_conv/weights in .*data-00000-of-00001 fails its checksum"):
        convert_network(folder)


def test_a_truncated_or_missing_data_shard_is_named(tf_dir, tmp_path):
    folder = _copy(tf_dir / "gray", tmp_path / "gray")
    data = folder / f"{PREFIX}.data-00000-of-00001"
    with data.open("r+b") as f:
        f.truncate(data.stat().st_size - 100)
    with pytest.raises(BundleError, match=r"data-00000-of-00001 is truncated .* fetch it again"):
        convert_network(folder)
    data.unlink()
    with pytest.raises(BundleError, match=r"data-00000-of-00001 is missing: .*copy both files together"):
        convert_network(folder / PREFIX)


def test_unknown_variables_and_dtypes_are_refused_by_name(tf_dir):
    with pytest.raises(ConversionError, match=r"missing 1: g_net/dec1_0/biases; unexpected 1: g_net/extra"):
        convert_network(tf_dir / "odd" / "foreign")
    with pytest.raises(ConversionError, match=r"g_net/enc1_1/biases in .*model.index is float64"):
        convert_network(tf_dir / "odd" / "float64")


def test_a_training_checkpoint_converts_without_its_adam_state(tf_dir):
    plain, training = convert_network(tf_dir / "gray"), convert_network(tf_dir / "odd" / "adam")
    assert training.model == "gray" and len(training.skipped) == 2 * 84 + 3  # slots, beta powers, step
    for key, value in plain.network.state_dict().items():
        torch.testing.assert_close(training.network.state_dict()[key], value, rtol=0, atol=0)


def test_conversion_runs_with_tensorflow_not_importable(tf_dir, tmp_path):
    out = tmp_path / "lstm.ckpt"
    code = (
        "import runpy, sys; sys.modules['tensorflow'] = None; "  # `import tensorflow` now fails
        f"sys.argv = ['convert', {str(tf_dir / 'lstm')!r}, {str(out)!r}]; "
        "runpy.run_module('srn_deblur.convert', run_name='__main__')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "release model 'lstm', 86 tensors, 8,056,609 parameters" in run.stdout
    assert load_network(out).config["tf_exact"] is True
