"""The converter's pieces that need no TensorFlow: the variable map, model recognition, finding a
checkpoint in a folder, and clear errors for files that are not checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from srn_deblur.convert import RELEASE_MODELS, ConversionError, recognise, variable_map
from srn_deblur.network import SRNDeblurNet
from srn_deblur.tf_bundle import BundleEntry, BundleError, TensorBundle, find_checkpoint, masked_crc32c

ROOT = Path(__file__).resolve().parents[1]


def test_crc32c_and_its_mask_match_the_published_values():
    # CRC-32C check value (RFC 3720 / iSCSI): "123456789" -> 0xE3069283; LevelDB's mask rotates
    # right by 15 and adds 0xa282ead8.
    rotated = ((0xE3069283 >> 15) | (0xE3069283 << 17)) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == (rotated + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize(("model", "tensors"), [("color", 84), ("gray", 84), ("lstm", 86)])
def test_the_variable_map_covers_every_parameter_once(model, tensors):
    names = variable_map(model)
    assert len(names) == tensors  # the release's tensor counts
    net = SRNDeblurNet(**RELEASE_MODELS[model], tf_exact=True)
    assert sorted(names.values()) == sorted(net.state_dict())
    # Spot checks against the release's layout: the decoder's ResBlock scopes count down.
    assert names["g_net/dec3_3/conv1/weights"] == "nets.0.dblock1.res_blocks.0.conv1.weight"
    assert names["g_net/dec1_1/conv2/biases"] == "nets.0.out_block.res_blocks.2.conv2.bias"
    assert names["g_net/enc2_1/weights"] == "nets.0.eblock1.conv.weight"


def _entry(name: str, shape: tuple[int, ...]) -> BundleEntry:
    return BundleEntry(name, 1, shape, 0, 0, 0, 0, False)


def test_models_are_recognised_from_their_variables():
    def entries(in_channels: int, lstm: bool) -> dict[str, BundleEntry]:
        found = {"g_net/enc1_1/weights": _entry("g_net/enc1_1/weights", (5, 5, in_channels, 32))}
        if lstm:
            name = "g_net/convLSTM/LSTM_conv/weights"
            found[name] = _entry(name, (3, 3, 256, 512))
        return found

    assert recognise(entries(6, False), Path("x")) == "color"
    assert recognise(entries(2, False), Path("x")) == "gray"
    assert recognise(entries(2, True), Path("x")) == "lstm"
    with pytest.raises(ConversionError, match=r"x is not one of the release's SRN models .* \[5, 5, 4, 32\]"):
        recognise(entries(4, False), Path("x"))
    with pytest.raises(ConversionError, match=r"enc1_1/weights is missing"):
        recognise({}, Path("x"))


def _fake_checkpoint(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.index").write_bytes(b"")
    return folder / name


def test_a_checkpoint_is_found_from_a_folder_a_prefix_or_one_of_its_files(tmp_path):
    old = _fake_checkpoint(tmp_path, "deblur.model-9000")
    new = _fake_checkpoint(tmp_path, "deblur.model-523000")
    assert find_checkpoint(tmp_path) == new  # highest step without a state file
    # The state file names the authors' absolute path: only its file name counts.
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/tao/srn/deblur.model-9000"\n')
    assert find_checkpoint(tmp_path) == old
    assert find_checkpoint(new) == new
    assert find_checkpoint(f"{new}.index") == new
    assert find_checkpoint(f"{new}.data-00000-of-00001") == new


def test_paths_without_a_checkpoint_get_errors_that_say_what_to_pass(tmp_path):
    with pytest.raises(BundleError, match=r"holds no TensorFlow checkpoint \(no \*.index file\); pass"):
        find_checkpoint(tmp_path)
    with pytest.raises(BundleError, match=r"neither a folder nor a checkpoint prefix"):
        find_checkpoint(tmp_path / "deblur.model-523000")
    not_a_table = _fake_checkpoint(tmp_path / "bad", "model")
    Path(f"{not_a_table}.index").write_bytes(b"\0" * 100)
    with pytest.raises(BundleError, match=r"model.index is not a TensorFlow checkpoint index"):
        TensorBundle(not_a_table)


def test_the_command_reports_errors_without_a_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "srn_deblur.convert", str(tmp_path), str(tmp_path / "out.ckpt")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: {tmp_path} holds no TensorFlow checkpoint")
    assert "Traceback" not in run.stderr and not (tmp_path / "out.ckpt").exists()
