"""TensorFlow 1.x op conventions of the TF-exact network, checked against numpy written from the
formulas in docs/release_models.md (the TensorFlow comparison itself is tests/test_tf_exact.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srn_deblur.blocks import EBlock
from srn_deblur.module import SRNLitModule
from srn_deblur.network import SRNDeblurNet
from srn_deblur.recurrence import resize_bilinear, resize_bilinear_tf1

SMALL = {"widths": (4, 8, 8), "num_res_blocks": 1}


def numpy_tf1_resize(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """TF 1.x bilinear, pixel by pixel: src = dst * in / out, no half-pixel offset, edge clamp."""
    h, w = x.shape[-2:]
    out = np.zeros((*x.shape[:-2], oh, ow), dtype=np.float64)
    for i in range(oh):
        sy = i * h / oh
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(ow):
            sx = j * w / ow
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = x[..., y0, x0] * (1 - fx) + x[..., y0, x1] * fx
            bottom = x[..., y1, x0] * (1 - fx) + x[..., y1, x1] * fx
            out[..., i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize(
    ("size", "out"), [((8, 12), (4, 6)), ((9, 7), (5, 4)), ((5, 6), (10, 12)), ((6, 5), (13, 3))]
)
def test_tf1_resize_matches_the_formula(size, out):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    expected = numpy_tf1_resize(x.double().numpy(), *out)
    np.testing.assert_allclose(resize_bilinear_tf1(x, out).numpy(), expected, rtol=0, atol=1e-6)


def test_tf1_resize_decimates_and_upsamples_as_documented():
    x = torch.rand(1, 2, 8, 10)
    torch.testing.assert_close(resize_bilinear_tf1(x, (4, 5)), x[..., ::2, ::2], rtol=0, atol=0)
    up = resize_bilinear_tf1(x, (16, 20))
    torch.testing.assert_close(up[..., ::2, ::2], x, rtol=0, atol=0)
    torch.testing.assert_close(up[..., 1:-1:2, ::2], (x[..., :-1, :] + x[..., 1:, :]) / 2)
    torch.testing.assert_close(up[..., -1, ::2], x[..., -1, :])  # the last sample repeated
    assert resize_bilinear_tf1(x, (8, 10)) is x


def test_pytorch_resize_is_half_pixel_not_tf1():
    x = torch.rand(1, 1, 8, 8)
    # Half-pixel centres: a 2x downscale averages each 2x2 block instead of picking one pixel.
    torch.testing.assert_close(resize_bilinear(x, (4, 4)), F.avg_pool2d(x, 2))
    assert (resize_bilinear(x, (4, 4)) - resize_bilinear_tf1(x, (4, 4))).abs().max() > 0.05


def numpy_correlate(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, before: int, after: int
) -> np.ndarray:
    """Zero-padded strided cross-correlation, x (C, H, W), w (O, C, k, k)."""
    xp = np.pad(x, ((0, 0), (before, after), (before, after)))
    k = w.shape[-1]
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = np.zeros((w.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2])) + b
    return out


# TF's 'SAME' for k = 5, stride 2: (before, after) = (1, 2) on an even size, (2, 2) on an odd one.
@pytest.mark.parametrize(("length", "before", "after"), [(8, 1, 2), (9, 2, 2), (12, 1, 2)])
def test_strided_conv_pads_as_tensorflow_same(length, before, after):
    torch.manual_seed(0)
    tf_block = EBlock(3, 4, stride=2, num_res_blocks=0, tf_padding=True)
    torch_block = EBlock(3, 4, stride=2, num_res_blocks=0)
    torch_block.load_state_dict(tf_block.state_dict())
    x = torch.randn(1, 3, length, length)
    w, b = tf_block.conv.weight.detach().double().numpy(), tf_block.conv.bias.detach().double().numpy()
    expected = np.maximum(numpy_correlate(x[0].double().numpy(), w, b, 2, before, after), 0)
    np.testing.assert_allclose(tf_block(x)[0].detach().numpy(), expected, atol=1e-5)
    differs = (tf_block(x) - torch_block(x)).abs().max().item() > 1e-3
    assert differs == (length % 2 == 0)  # PyTorch's symmetric padding=2 agrees on odd sizes only


def test_both_conventions_share_parameters_but_not_outputs():
    for kwargs in ({}, {"channels": 3, "recurrence": "none"}, {"recurrence": "none"}):
        torch_net, tf_net = SRNDeblurNet(**kwargs), SRNDeblurNet(**kwargs, tf_exact=True)
        shapes = {k: v.shape for k, v in torch_net.state_dict().items()}
        assert shapes == {k: v.shape for k, v in tf_net.state_dict().items()}
        assert sum(p.numel() for p in tf_net.parameters()) == sum(p.numel() for p in torch_net.parameters())
    torch_net, tf_net = SRNDeblurNet(**SMALL), SRNDeblurNet(**SMALL, tf_exact=True)
    tf_net.load_state_dict(torch_net.state_dict())
    assert tf_net.config["tf_exact"] and not torch_net.config["tf_exact"]
    x = torch.rand(1, 1, 32, 32)
    for a, b in zip(torch_net(x), tf_net(x), strict=True):
        assert (a - b).abs().max() > 1e-3


def test_tf_exact_network_resizes_its_pyramid_by_decimation():
    """The coarsest scale of a TF-exact net sees x[::4, ::4]: its output equals the same net run
    on that decimated image at one scale (the single-scale net's only level is that image)."""
    torch.manual_seed(0)
    three = SRNDeblurNet(**SMALL, tf_exact=True).eval()
    one = SRNDeblurNet(**SMALL, num_scales=1, tf_exact=True).eval()
    one.load_state_dict(three.state_dict())
    x = torch.rand(1, 1, 64, 48)
    torch.testing.assert_close(three(x)[0], one(x[..., ::4, ::4])[0])


@pytest.mark.parametrize("tf_exact", [False, True])
def test_loss_resizes_targets_with_the_networks_rule(tf_exact):
    net = SRNDeblurNet(**SMALL, tf_exact=tf_exact)
    module = SRNLitModule(net, optimizer=torch.optim.Adam)
    sharp = torch.rand(1, 1, 16, 16)
    estimates = [torch.rand(1, 1, 4, 4), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 16, 16)]

    def target(k: int) -> torch.Tensor:
        if tf_exact or k == 1:  # TF 1.x samples at dst * k: decimation
            return sharp[..., ::k, ::k]
        # Half-pixel centres sample at k * (dst + 0.5) - 0.5: the mean of the 2x2 pixels around it.
        offset = k // 2 - 1
        return F.avg_pool2d(sharp[..., offset:, offset:], 2, stride=k)

    expected = sum(F.mse_loss(e, target(k)) for e, k in zip(estimates, (4, 2, 1), strict=True))
    torch.testing.assert_close(module.criterion(estimates, sharp), expected)
