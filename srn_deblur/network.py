"""The scale-recurrent network: one encoder-decoder run coarse-to-fine (paper Eq. 1-2).

    I_i, h_i = Net_SR(B_i, up(I_{i+1}), up(h_{i+1}); theta)

Defaults reproduce the release's `lstm` model (the paper's), 8,056,609 parameters. The settings
live in one dataclass, `SRNConfig`; a checkpoint's `net_config` is its `to_dict()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srn_deblur.blocks import DBlock, EBlock, InBlock, OutBlock
from srn_deblur.recurrence import RECURRENCE_TYPES, build_recurrence, resize_rule

# The encoder halves the size twice, so every scale's input must divide by 4.
_ENCODER_STRIDE = 4


@dataclass(frozen=True)
class SRNConfig:
    """The settings of an `SRNDeblurNet`; the defaults are the paper's (release `lstm`) model.

    Args:
        channels: image channels the network works on (1 = the paper's grey model, 3 = colour).
            A 1-channel network given `(N, 3, H, W)` runs R, G, B as three samples, as the
            release deblurs colour images with its grey models.
        num_scales: number of scales (3 in the paper; 1 = the "single scale" ablation).
        scale_factor: size ratio between neighbouring scales (0.5).
        widths: feature widths of the three encoder levels (32, 64, 128).
        num_res_blocks: ResBlocks in every InBlock/EBlock/DBlock/OutBlock (3).
        res_skip: the ResBlocks' identity skip; off, each is two plain conv + ReLU layers (the
            ablation's SR-ED row).
        kernel_size: kernel of every plain conv (5; the ablation study used 3).
        deconv_kernel_size: transposed-conv kernel (4 in the release, 5 in the paper's text).
        recurrence: bottleneck, one of `lstm`, `gru`, `rnn` (cells whose state crosses scales),
            `conv` (one conv + ReLU, no state: the ablation's SS, SC and w/o R rows) or `none`
            (no bottleneck: the released `color` and `gray` models).
        recurrent_kernel_size: kernel of the bottleneck's conv (3).
        shared_weights: one set of weights for all scales (True) or one per scale (the
            "scale cascade" ablation).
        residual: predict `blurry + estimate` instead of the image itself. Off in the paper;
            it lets a short CPU run beat the blurry input quickly.
        pad_mode: how inputs are padded to the size every scale needs (`replicate`/`reflect`).
        tf_exact: follow TensorFlow 1.x's op conventions, as the release's trained weights need:
            strided convs padded as TF's 'SAME' and every bilinear resize (input pyramid,
            previous estimate, recurrent state, the loss's targets) without half-pixel centres.
            Same parameters either way; off = PyTorch's conventions, for training from scratch.
    """

    channels: int = 1
    num_scales: int = 3
    scale_factor: float = 0.5
    widths: tuple[int, int, int] = (32, 64, 128)
    num_res_blocks: int = 3
    res_skip: bool = True
    kernel_size: int = 5
    deconv_kernel_size: int = 4
    recurrence: str = "lstm"
    recurrent_kernel_size: int = 3
    shared_weights: bool = True
    residual: bool = False
    pad_mode: str = "replicate"
    tf_exact: bool = False

    def __post_init__(self) -> None:
        # Hydra hands lists (or ListConfig); a frozen config keeps a tuple of plain ints.
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey, the paper's) or 3 (colour), got {self.channels}")
        if self.num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {self.num_scales}")
        if not 0.0 < self.scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1), got {self.scale_factor}")
        if len(self.widths) != 3:
            raise ValueError(f"widths must list 3 feature widths, got {list(self.widths)}")
        if self.recurrence not in RECURRENCE_TYPES:
            raise ValueError(f"recurrence must be one of {RECURRENCE_TYPES}, got {self.recurrence!r}")
        if self.pad_mode not in ("replicate", "reflect"):
            raise ValueError(f"pad_mode must be 'replicate' or 'reflect', got {self.pad_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (widths as a list), so checkpoints load with `weights_only=True` and
        `SRNDeblurNet(**d)` rebuilds the network; keys added later fall back to their defaults."""
        return {**dataclasses.asdict(self), "widths": list(self.widths)}


class EncoderDecoder(nn.Module):
    """One scale of SRN: InBlock, 2 EBlocks, bottleneck, 2 DBlocks, OutBlock.

    Input `(N, 2C, H, W)` = cat(blurry, previous estimate); output `(N, C, H, W)`.
    Skip connections add (not concatenate) encoder features to decoder features.
    """

    def __init__(self, config: SRNConfig = SRNConfig()) -> None:
        super().__init__()
        c = config
        w1, w2, w3 = c.widths
        blocks = {"num_res_blocks": c.num_res_blocks, "kernel_size": c.kernel_size, "res_skip": c.res_skip}
        self.in_block = InBlock(2 * c.channels, w1, **blocks)
        self.eblock1 = EBlock(w1, w2, 2, tf_padding=c.tf_exact, **blocks)
        self.eblock2 = EBlock(w2, w3, 2, tf_padding=c.tf_exact, **blocks)
        self.recurrent = build_recurrence(c.recurrence, w3, c.recurrent_kernel_size)
        self.dblock1 = DBlock(w3, w2, deconv_kernel_size=c.deconv_kernel_size, **blocks)
        self.dblock2 = DBlock(w2, w1, deconv_kernel_size=c.deconv_kernel_size, **blocks)
        self.out_block = OutBlock(w1, c.channels, **blocks)

    def forward(self, x: Tensor, state=None) -> tuple[Tensor, object]:
        e1 = self.in_block(x)  # (N, w1, H, W)
        e2 = self.eblock1(e1)  # (N, w2, H/2, W/2)
        e3 = self.eblock2(e2)  # (N, w3, H/4, W/4)
        h, state = self.recurrent(e3, state)  # (N, w3, H/4, W/4)
        d2 = self.dblock1(h) + e2  # (N, w2, H/2, W/2)
        d1 = self.dblock2(d2) + e1  # (N, w1, H, W)
        return self.out_block(d1), state  # (N, C, H, W)


class SRNDeblurNet(nn.Module):
    """Scale-recurrent deblurring network, built from an `SRNConfig` (see it for the settings).

    `SRNDeblurNet(**settings)` (Hydra configs, `load_network`'s `net_config`) and
    `SRNDeblurNet(SRNConfig(...), **overrides)` build the same network.

    Input: `(N, C, H, W)` float in [0, 1], any H, W. Output: list of `num_scales` estimates,
    coarsest first; the last one is full resolution `(N, C, H, W)` and is the result.
    """

    def __init__(self, config: SRNConfig | None = None, /, **settings: Any) -> None:
        super().__init__()
        self.cfg = dataclasses.replace(config, **settings) if config is not None else SRNConfig(**settings)
        c = self.cfg
        self.channels = c.channels
        self.num_scales = c.num_scales
        self.scale_factor = c.scale_factor
        self.residual = c.residual
        self.pad_mode = c.pad_mode
        self.shared_weights = c.shared_weights
        self.tf_exact = c.tf_exact
        self._resize = resize_rule(c.tf_exact)
        n_nets = 1 if c.shared_weights else c.num_scales
        self.nets = nn.ModuleList(EncoderDecoder(c) for _ in range(n_nets))
        self.reset_parameters()

    @property
    def config(self) -> dict[str, Any]:
        """The settings as plain values: what checkpoints store as `net_config`."""
        return self.cfg.to_dict()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases for every conv, as the release does.

        A residual network also starts with a zero output conv, so its first estimate is the
        blurry input itself rather than the input plus a random image that the first steps of
        training would spend unlearning (docs/demo.md tells the story).
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if self.residual:
            for net in self.nets:
                nn.init.zeros_(net.out_block.conv.weight)

    def resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """Bilinear resize `(N, C, h, w)` to `size` with this network's convention (TF 1.x's or
        PyTorch's); the multi-scale loss resizes its targets with it too, so they always match."""
        return self._resize(x, size)

    @property
    def recurrent_parameters(self) -> list[nn.Parameter]:
        """Parameters of the bottleneck cells whose state crosses scales: the only ones the
        paper clips (a stateless `conv` bottleneck is an ordinary layer)."""
        return [p for net in self.nets if net.recurrent.carries_state for p in net.recurrent.parameters()]

    def scale_size(self, height: int, width: int, level: int) -> tuple[int, int]:
        """Spatial size at `level` (0 = full resolution), rounded as the release does.

        At least one pixel: a side too short for the coarse scales (e.g. 1 or 2 pixels at 3
        scales, which round to 0) gets one-pixel estimates there, so every scale has a loss.
        """
        f = self.scale_factor**level
        return max(1, round(height * f)), max(1, round(width * f))

    def padded_length(self, length: int) -> int:
        """Smallest length >= `length` that divides by 4 at every scale (16 for 3 scales at 0.5)."""

        def fits(n: int) -> bool:
            sizes = [round(n * self.scale_factor**level) for level in range(self.num_scales)]
            return all(s > 0 and s % _ENCODER_STRIDE == 0 for s in sizes)

        while not fits(length):
            length += 1
        return length

    def forward(self, blurry: Tensor) -> list[Tensor]:
        if blurry.dim() != 4:
            raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(blurry.shape)}")
        n, c, height, width = blurry.shape
        fold = self.channels == 1 and c == 3
        if c != self.channels and not fold:
            raise ValueError(
                f"this network works on {self.channels}-channel images but got {c} channels"
                " (a 1-channel network accepts 3-channel input and runs each channel separately)"
            )
        x = blurry.reshape(n * c, 1, height, width) if fold else blurry  # (N*3, 1, H, W)

        ph, pw = self.padded_length(height), self.padded_length(width)
        if (ph, pw) != (height, width):
            pad_mode = self.pad_mode
            if pad_mode == "reflect" and (ph - height >= height or pw - width >= width):
                pad_mode = "replicate"  # reflect cannot pad by more than the size itself
            x = F.pad(x, (0, pw - width, 0, ph - height), mode=pad_mode)  # (N', C, ph, pw)

        estimates: list[Tensor] = []
        previous: Tensor | None = None
        state = None
        for step, level in enumerate(reversed(range(self.num_scales))):  # coarsest first
            size = self.scale_size(ph, pw, level)
            b_i = self.resize(x, size)  # (N', C, h_i, w_i)
            # The previous estimate is an input, not a path for gradients (stop_gradient).
            prev_i = b_i if previous is None else self.resize(previous.detach(), size)
            net = self.nets[0 if self.shared_weights else step]
            bottleneck = (size[0] // _ENCODER_STRIDE, size[1] // _ENCODER_STRIDE)
            state = net.recurrent.resize_state(state, bottleneck, self.resize)
            out, state = net(torch.cat([b_i, prev_i], dim=1), state)  # (N', C, h_i, w_i)
            if self.residual:
                out = out + b_i
            estimates.append(out)
            previous = out

        results = []
        for level, est in zip(reversed(range(self.num_scales)), estimates, strict=True):
            h_i, w_i = self.scale_size(height, width, level)
            est = est[..., :h_i, :w_i]  # crop the padding back
            results.append(est.reshape(n, c, h_i, w_i) if fold else est)
        return results


def parameter_count(net: nn.Module) -> int:
    """Trainable and frozen parameters of `net`: the figure the release and the papers quote."""
    return sum(p.numel() for p in net.parameters())
