"""ONNX export: the exported graph reproduces eager PyTorch, and the CLI reports the check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srn_deblur.inference import CheckpointError, save_network
from srn_deblur.network import SRNDeblurNet

pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="the export extra is not installed: pip install -e '.[export]'")

from srn_deblur.export import (  # noqa: E402
    ExportError,
    check_export,
    export_onnx,
    main,
    onnx_input_shape,
    onnx_session,
)

SMALL = dict(widths=(4, 8, 8), num_res_blocks=1, kernel_size=3)
# float32 on both sides; different conv algorithms only.
TOLERANCE = 1e-5


def _net(channels: int) -> SRNDeblurNet:
    torch.manual_seed(0)
    return SRNDeblurNet(channels=channels, **SMALL).eval()


def test_exported_grey_model_matches_eager_and_the_check_catches_a_difference(tmp_path: Path):
    net = _net(1)  # the paper's kind: RGB is folded into the batch inside the graph
    path = export_onnx(net, tmp_path / "srn.onnx", 40, 56)  # not a multiple of 16: padding is in the graph
    session = onnx_session(path, threads=1)
    assert onnx_input_shape(session)[1:] == (3, 40, 56)
    for batch in (1, 3):  # exported with 2: the batch dimension stays free
        assert check_export(session, net, batch=batch, tolerance=TOLERANCE, seed=batch) <= TOLERANCE
    x = torch.rand(1, 3, 40, 56)
    out = session.run(None, {"blurry": x.numpy()})[0]
    assert out.min() >= 0.0 and out.max() <= 1.0  # clamped as deblur() clamps
    with torch.no_grad():
        net.nets[0].out_block.conv.bias.add_(0.5)  # the network changed after export
    with pytest.raises(ExportError, match="differs from eager PyTorch by .*do not deploy"):
        check_export(session, net, tolerance=TOLERANCE)


def test_cli_exports_a_training_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    net = _net(3)
    ckpt = tmp_path / "last.ckpt"
    save_network(net, ckpt)
    path = main([str(ckpt), "--height", "32", "--width", "48", "--tolerance", str(TOLERANCE)])
    assert path == tmp_path / "last.onnx" and path.is_file()
    printed = capsys.readouterr().out
    assert "('batch', 3, 32, 48)" in printed
    assert "max |onnxruntime - eager PyTorch|" in printed
    # The file on disk is the trained network, not a fresh one.
    assert check_export(onnx_session(path, threads=1), net, tolerance=TOLERANCE) <= TOLERANCE


def test_cli_names_a_missing_checkpoint(tmp_path: Path):
    with pytest.raises(CheckpointError, match="nope.ckpt does not exist"):
        main([str(tmp_path / "nope.ckpt")])


def test_export_refuses_an_empty_size(tmp_path: Path):
    with pytest.raises(ValueError, match="export size must be positive, got 0x32"):
        export_onnx(_net(3), tmp_path / "x.onnx", 0, 32)
