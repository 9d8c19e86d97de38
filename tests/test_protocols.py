"""Scoring protocols against independent computations: MATLAB's volume SSIM written with
scipy.ndimage, 8-bit truncation with numpy, RealBlur's aligned scoring on a pair warped by a
known homography, and the configs that name the protocols."""

from __future__ import annotations

from pathlib import Path

import cv2
import hydra
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from omegaconf import OmegaConf
from skimage.metrics import structural_similarity

from datamodules.motion_blur import BlurParams, blur_image
from datamodules.synthetic import load_bundled_image
from srn_deblur.alignment import align_to_reference
from srn_deblur.protocols import ScoringProtocol
from tests.conftest import CONFIG_DIR


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float in [0, 1] -> (1, 3, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]


def _matlab_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB's ssim on an H x W x 3 array (its 'SSS' reading), written out with scipy.

    imgaussfilt3 with sigma 1.5 and size 2 * ceil(3 * 1.5) + 1 = 11 along every axis: scipy's
    Gaussian with radius 5 (truncate = 5 / 1.5), 'nearest' = MATLAB's replicate padding.
    """
    x, y = x.astype(np.float64), y.astype(np.float64)

    def blur(v: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(v, sigma=1.5, truncate=5 / 1.5, mode="nearest")

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


@pytest.fixture(scope="module")
def photo_pair() -> tuple[np.ndarray, np.ndarray]:
    """A sharp 8-bit photo crop and a motion-blurred copy, as floats in [0, 1]."""
    sharp = np.ascontiguousarray(load_bundled_image("chelsea", 128)[:70, :90])
    blurry = blur_image(sharp, np.random.default_rng(0), BlurParams(5, 9))
    return sharp / 255.0, blurry / 255.0


def test_volume_ssim_is_matlabs_3d_ssim_and_differs_from_the_per_channel_one(photo_pair):
    sharp, blurry = photo_pair
    matlab = ScoringProtocol(name="matlab", ssim="volume")
    psnr, ssim = matlab.score(_tensor(blurry), _tensor(sharp), estimate=False)
    assert ssim == pytest.approx(_matlab_ssim(blurry, sharp), abs=1e-6)
    assert psnr == pytest.approx(10 * np.log10(1 / np.mean((blurry - sharp) ** 2)), abs=1e-4)
    per_channel = structural_similarity(
        blurry,
        sharp,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=2,
        data_range=1.0,
    )
    _, default_ssim = ScoringProtocol().score(_tensor(blurry), _tensor(sharp), estimate=False)
    assert default_ssim == pytest.approx(per_channel, abs=1e-4)
    # The two conventions a table may use really are different numbers on the same images.
    assert abs(ssim - per_channel) > 1e-3


@pytest.mark.parametrize("rounding", ["round", "truncate"])
def test_8_bit_quantisation_equals_numpy(rounding: str):
    rng = np.random.default_rng(1)
    # Values on, just below and just above the 8-bit levels, and outside [0, 1].
    levels = rng.integers(0, 256, 4000) / 255.0
    floats = np.concatenate([levels, levels - 1e-4, levels + 1e-4, [-0.3, 1.7]]).astype(np.float32)
    scaled = np.clip(floats, 0, 1) * np.float32(255)
    expected = scaled.astype(np.uint8) if rounding == "truncate" else np.round(scaled).astype(np.uint8)
    ours = ScoringProtocol(rounding=rounding).to_8bit(torch.from_numpy(floats))
    assert torch.equal(torch.round(ours * 255).to(torch.uint8), torch.from_numpy(expected))
    if rounding == "truncate":
        assert (expected != np.round(scaled)).mean() > 0.3  # truncation really is another image


def test_release_protocol_scores_the_truncated_image_as_matlab_would(photo_pair):
    sharp, blurry = photo_pair
    estimate = np.clip(blurry + 0.002, 0, 1)  # off the 8-bit grid
    truncated = (np.clip(estimate, 0, 1) * 255).astype(np.uint8) / 255.0  # the release's cast
    release = ScoringProtocol(name="release", ssim="volume", rounding="truncate")
    psnr, ssim = release.score(_tensor(estimate), _tensor(sharp))
    assert ssim == pytest.approx(_matlab_ssim(truncated, sharp), abs=1e-6)
    assert psnr == pytest.approx(10 * np.log10(1 / np.mean((truncated - sharp) ** 2)), abs=1e-4)


# A small homography (about 1.5 px of shift, a fraction of a degree, a little perspective) and a
# brightness change, the kind of mismatch RealBlur's two cameras leave.
HOMOGRAPHY = np.array([[1.0, 0.004, 1.6], [-0.003, 1.0, -1.2], [1e-5, 0.0, 1.0]], dtype=np.float32)
GAIN = 0.9


@pytest.fixture(scope="module")
def warped_pair() -> tuple[np.ndarray, np.ndarray]:
    sharp = np.ascontiguousarray(load_bundled_image("astronaut", 200)[:144, :176]).astype(np.float32) / 255
    h, w = sharp.shape[:2]
    # estimate(H x) = GAIN * sharp(x), saved as an 8-bit image
    warped = cv2.warpPerspective(
        sharp, HOMOGRAPHY, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    return sharp, (np.round(np.clip(warped * GAIN, 0, 1) * 255) / 255).astype(np.float32)


def test_realblur_alignment_recovers_the_warp_and_the_aligned_psnr_is_high(warped_pair):
    sharp, estimate = warped_pair
    aligned = align_to_reference(estimate, sharp)
    assert aligned.converged
    np.testing.assert_allclose(aligned.homography / aligned.homography[2, 2], HOMOGRAPHY, atol=0.1)
    realblur = ScoringProtocol(name="realblur", alignment="realblur")
    psnr, ssim = realblur.score(_tensor(estimate), _tensor(sharp))
    unaligned_psnr, unaligned_ssim = ScoringProtocol().score(_tensor(estimate), _tensor(sharp))
    # Stated: aligned above 30 dB, unaligned below 20 dB (1.5 px and 10% brightness off).
    assert psnr > 30 and unaligned_psnr < 20
    assert ssim > 0.97 and unaligned_ssim < 0.7
    # The masked means, computed independently from the aligned images (numpy, scikit-image).
    mask = aligned.mask
    mse = np.sum((aligned.estimate.astype(np.float64) - aligned.reference) ** 2) / mask.sum()
    assert psnr == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
    _, ssim_map = structural_similarity(
        aligned.reference,
        aligned.estimate,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=2,
        data_range=1.0,
        full=True,
    )
    inner = (slice(5, -5), slice(5, -5))
    per_channel = (ssim_map * mask)[inner].sum(axis=(0, 1)) / mask[inner].sum(axis=(0, 1))
    assert ssim == pytest.approx(per_channel.mean(), abs=1e-4)


def test_realblur_protocol_on_an_identical_pair_scores_infinite_psnr_and_ssim_1(warped_pair):
    sharp, _ = warped_pair
    psnr, ssim = ScoringProtocol(name="realblur", alignment="realblur").score(_tensor(sharp), _tensor(sharp))
    assert psnr == float("inf") and ssim == pytest.approx(1.0, abs=1e-9)
    assert ScoringProtocol(ssim="volume").score(_tensor(sharp), _tensor(sharp)) == (
        float("inf"),
        pytest.approx(1.0),
    )


EXPECTED_PROTOCOLS = {
    "default": ("channel", "round", "none"),
    "matlab": ("volume", "round", "none"),
    "release": ("volume", "truncate", "none"),
    "realblur": ("channel", "round", "realblur"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PROTOCOLS))
def test_protocol_configs_build_the_protocols_they_name(name: str):
    protocol = hydra.utils.instantiate(OmegaConf.load(Path(CONFIG_DIR) / "protocol" / f"{name}.yaml"))
    assert protocol.name == name
    assert (protocol.ssim, protocol.rounding, protocol.alignment) == EXPECTED_PROTOCOLS[name]
    assert f"Protocol `{name}`" in protocol.describe()


def test_a_misspelt_protocol_setting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"rounding must be one of \('round', 'truncate'\)"):
        ScoringProtocol(rounding="floor")
    with pytest.raises(ValueError, match="ssim must be one of"):
        ScoringProtocol(ssim="matlab")
