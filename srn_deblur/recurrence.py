"""Recurrent bottlenecks that carry information from a coarse scale to the next finer one.

The paper's model uses a ConvLSTM; its ablation (Table 1) compares it with a plain conv
RNN, a ConvGRU, and a plain conv that passes no state (the single-scale rows); the released
`color`/`gray` models have no bottleneck at all. Every cell has the same interface so the
scale-recurrent wrapper never needs to know which one it holds:

* ``cell(x, state) -> (features, state)``, with ``state=None`` meaning zeros;
* ``cell.resize_state(state, size, resize)``, bilinear resizing of every state tensor to
  the next scale's bottleneck size with the network's resize rule.

Two bilinear resize rules live here, one for each framework's convention; a network picks one
(`SRNDeblurNet.resize`) and uses it everywhere, loss targets included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srn_deblur.blocks import same_padding

State = tuple[Tensor, ...]
Resize = Callable[[Tensor, tuple[int, int]], Tensor]


def resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """PyTorch's bilinear resize: half-pixel centres (`align_corners=False`), no antialiasing.

    This is *not* TF 1.x's `resize_images`, which has no half-pixel offset (see
    `resize_bilinear_tf1`); it is the convention of networks trained here from scratch.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _tf1_taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """TF 1.x sampling along one axis: `src = dst * in / out`, neighbours floor(src) and the next
    one clamped to the edge, and the fractional weight (computed in float32, as TF does)."""
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out  # a float32 quotient, as TF's
    src = torch.arange(n_out, device=device, dtype=torch.float32) * scale.to(device)
    lower = src.floor().long().clamp(max=n_in - 1)
    upper = (lower + 1).clamp(max=n_in - 1)
    return lower, upper, src - lower.float()


def resize_bilinear_tf1(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize exactly as TF 1.x's `resize_images(BILINEAR, align_corners=False)`.

    No half-pixel offset: a 2x downscale is plain decimation `x[..., ::2, ::2]`. The release's
    weights were trained with it for the input pyramid, the previous estimate, the ConvLSTM
    state and the loss's targets. Interpolates along the width first, then the height, as TF.
    """
    (h, w), (oh, ow) = x.shape[-2:], size
    if (h, w) == (oh, ow):
        return x
    left, right, wx = _tf1_taps(w, ow, x.device)
    top, bottom, wy = _tf1_taps(h, oh, x.device)
    wx, wy = wx.to(x.dtype), wy.to(x.dtype)
    x_left, x_right = x[..., left], x[..., right]  # (..., h, ow)
    rows = x_left + (x_right - x_left) * wx
    r_top, r_bottom = rows[..., top, :], rows[..., bottom, :]  # (..., oh, ow)
    return r_top + (r_bottom - r_top) * wy[:, None]


def resize_rule(tf_exact: bool) -> Resize:
    """The bilinear resize of a network's convention: TF 1.x's or PyTorch's."""
    return resize_bilinear_tf1 if tf_exact else resize_bilinear


class _ConvRecurrentCell(nn.Module):
    """Shared plumbing: zero initial state and bilinear state resizing."""

    num_state_tensors = 1
    # A cell whose state crosses scales: the paper clips the gradients of these alone.
    carries_state = True

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.channels = channels
        self.padding = same_padding(kernel_size)

    def _zeros(self, x: Tensor, dtype: torch.dtype | None = None) -> State:
        return tuple(torch.zeros_like(x, dtype=dtype) for _ in range(self.num_state_tensors))

    @staticmethod
    def _state_dtype(x: Tensor) -> torch.dtype:
        """At least float32: under bf16 autocast the memory stays in float32 across scales."""
        return torch.promote_types(x.dtype, torch.float32)

    def resize_state(
        self, state: State | None, size: tuple[int, int], resize: Resize = resize_bilinear
    ) -> State | None:
        # Bilinear resizing acts per channel, so resizing c and h apart equals the release's
        # resizing of its one concatenated [c, h] state tensor.
        if state is None:
            return None
        return tuple(resize(s, size) for s in state)


class ConvLSTMCell(_ConvRecurrentCell):
    """ConvLSTM of the release's `BasicConvLSTMCell`: one conv over cat(x, h) gives 4 gates.

    `c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)`, `h' = tanh(c') * sigmoid(o)`.
    The forget bias of 1.0 keeps the coarse scale's memory open early in training.
    """

    num_state_tensors = 2

    def __init__(self, channels: int, kernel_size: int = 3, forget_bias: float = 1.0) -> None:
        super().__init__(channels, kernel_size)
        self.forget_bias = forget_bias
        self.conv = nn.Conv2d(2 * channels, 4 * channels, kernel_size, padding=self.padding)

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        c, h = self._zeros(x, self._state_dtype(x)) if state is None else state
        # (N, 2C, h, w) -> (N, 4C, h, w) -> 4 x (N, C, h, w). The conv runs in x's dtype (bf16
        # under autocast); the gate arithmetic and the state (c, h) stay in float32, so the
        # rounding of a bf16 cell does not pile up from scale to scale.
        gates = self.conv(torch.cat([x, h.to(x.dtype)], dim=1)).to(self._state_dtype(x))
        i, j, f, o = torch.chunk(gates, 4, dim=1)
        new_c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * torch.tanh(j)
        new_h = torch.tanh(new_c) * torch.sigmoid(o)
        return new_h.to(x.dtype), (new_c, new_h)


class ConvGRUCell(_ConvRecurrentCell):
    """Convolutional GRU (the ablation's "GRU" row)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__(channels, kernel_size)
        self.gates = nn.Conv2d(2 * channels, 2 * channels, kernel_size, padding=self.padding)
        self.candidate = nn.Conv2d(2 * channels, channels, kernel_size, padding=self.padding)

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        (h,) = self._zeros(x) if state is None else state
        z, r = torch.chunk(torch.sigmoid(self.gates(torch.cat([x, h], dim=1))), 2, dim=1)
        h_tilde = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        new_h = (1 - z) * h + z * h_tilde
        return new_h, (new_h,)


class ConvRNNCell(_ConvRecurrentCell):
    """Plain convolutional RNN, `h' = tanh(conv(cat(x, h)))` (the ablation's "RNN" row)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__(channels, kernel_size)
        self.conv = nn.Conv2d(2 * channels, channels, kernel_size, padding=self.padding)

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        (h,) = self._zeros(x) if state is None else state
        new_h = torch.tanh(self.conv(torch.cat([x, h], dim=1)))
        return new_h, (new_h,)


class NoRecurrence(nn.Module):
    """Identity bottleneck: the released `color` and `gray` models."""

    carries_state = False

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, None]:
        return x, None

    def resize_state(
        self, state: State | None, size: tuple[int, int], resize: Resize = resize_bilinear
    ) -> None:
        return None


class ConvBottleneck(NoRecurrence):
    """One conv + ReLU (width -> width) that passes no state to the next scale.

    The ablation's SS, SC and w/o R rows put it where the ConvLSTM sits, so they differ from
    the full model by the recurrence alone, not by a missing layer. Its ReLU follows the rule
    of every plain conv in the network (a parameter count cannot tell either way).
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=same_padding(kernel_size))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, state: State | None) -> tuple[Tensor, None]:
        return self.relu(self.conv(x)), None


RECURRENCE_TYPES = ("lstm", "gru", "rnn", "conv", "none")


def build_recurrence(kind: str, channels: int, kernel_size: int) -> nn.Module:
    """Map the config word (`lstm`, `gru`, `rnn`, `conv`, `none`) to a cell."""
    if kind == "lstm":
        return ConvLSTMCell(channels, kernel_size)
    if kind == "gru":
        return ConvGRUCell(channels, kernel_size)
    if kind == "rnn":
        return ConvRNNCell(channels, kernel_size)
    if kind == "conv":
        return ConvBottleneck(channels, kernel_size)
    if kind == "none":
        return NoRecurrence()
    raise ValueError(f"recurrence must be one of {RECURRENCE_TYPES}, got {kind!r}")
