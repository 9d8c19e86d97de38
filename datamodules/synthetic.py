"""A synthetic motion-blur dataset built from sharp photos that ship with scikit-image and
scikit-learn.

No download is needed: the images live inside the two wheels. Each photo becomes
one "sequence" of the GOPRO layout; every frame of it is the photo blurred along its own
random camera path. Test photos are never used for training.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from filelock import FileLock

from datamodules.depth_of_field import defocus_regions
from datamodules.image_io import write_rgb
from datamodules.motion_blur import BlurParams, blur_image
from datamodules.paired import PairedDataModule
from datamodules.pairs import ImagePair, find_gopro_pairs

# Bundled with the scikit-image wheel, and scikit-learn's two sample photos (all checked to
# load offline). Grey ones become RGB. Natural photos first: the test photos are natural too.
TRAIN_IMAGES = (
    "astronaut", "rocket", "motorcycle_left", "motorcycle_right", "china", "flower", "coins",
    "moon", "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass", "gravel",
    "cell",
)
_SKLEARN_IMAGES = {"china": "china.jpg", "flower": "flower.jpg"}
TEST_IMAGES = ("chelsea", "coffee", "camera")
_MANIFEST = "synthetic_manifest.json"
# Bumped when the same parameters would give other images, so old folders are rebuilt.
_GENERATOR_VERSION = 2


def load_bundled_image(name: str, max_side: int) -> np.ndarray:
    """A bundled sample photo as `(H, W, 3)` uint8 RGB, its long side at most `max_side`."""
    import skimage.data

    if name in _SKLEARN_IMAGES:
        from sklearn.datasets import load_sample_image

        image = load_sample_image(_SKLEARN_IMAGES[name])
    elif name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(
                f"no bundled sample image named {name!r}: use a scikit-image sample name (e.g."
                f" 'astronaut') or one of {sorted(_SKLEARN_IMAGES)}"
            )
        image = loader()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3].astype(np.uint8)
    scale = max_side / max(image.shape[:2])
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def random_view(
    image: np.ndarray, rng: np.random.Generator, min_scale: float = 0.5, min_side: int = 256
) -> np.ndarray:
    """The image downscaled by a random factor in [min_scale, 1] (never below `min_side`
    pixels, so 256x256 crops still fit), flipped and rotated by k*90 degrees."""
    h, w = image.shape[:2]
    scale = rng.uniform(min(1.0, max(min_scale, min_side / min(h, w))), 1.0)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    view = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return np.ascontiguousarray(np.rot90(view, k=int(rng.integers(4))))


def build_synthetic_dataset(
    root: str | Path,
    train_images: Sequence[str] = TRAIN_IMAGES,
    test_images: Sequence[str] = TEST_IMAGES,
    train_frames: int = 8,
    test_frames: int = 2,
    max_side: int = 512,
    blur: BlurParams = BlurParams(),
    defocus_prob: float = 0.0,
    max_defocus_radius: float = 4.0,
    seed: int = 0,
) -> Path:
    """Write `root/{train,test}/<image>/{blur,sharp}/<frame>.png`; deterministic from `seed`.

    A manifest of the parameters is written last; a folder whose manifest matches is reused,
    one with another manifest is rebuilt, and a non-empty folder without a manifest (someone
    else's data) is never touched.
    """
    root = Path(root).expanduser()
    overlap = set(train_images) & set(test_images)
    if overlap:
        raise ValueError(f"images {sorted(overlap)} are in both the train and test lists")
    manifest = {
        "generator_version": _GENERATOR_VERSION,
        "train_images": list(train_images),
        "test_images": list(test_images),
        "train_frames": train_frames,
        "test_frames": test_frames,
        "max_side": max_side,
        "blur": dataclasses.asdict(blur),
        "defocus_prob": defocus_prob,
        "max_defocus_radius": max_defocus_radius,
        "seed": seed,
    }
    root.parent.mkdir(parents=True, exist_ok=True)
    # Runs started together (a parallel sweep, two jobs on one node) share the folder: one
    # generates while the others wait, then they find its manifest and reuse it instead of
    # mistaking a half-written folder for someone else's data.
    with FileLock(root.parent / f".{root.name}.lock"):
        manifest_path = root / _MANIFEST
        if manifest_path.is_file():
            if json.loads(manifest_path.read_text()) == manifest:
                return root
            for split in ("train", "test"):
                shutil.rmtree(root / split, ignore_errors=True)
            manifest_path.unlink()
        elif root.is_dir() and any(root.iterdir()):
            raise FileExistsError(
                f"{root} is not empty and was not made by the synthetic generator; point"
                " data.data_dir at an empty or new folder"
            )
        for split_id, (split, names, frames) in enumerate(
            (("train", train_images, train_frames), ("test", test_images, test_frames))
        ):
            for name in names:
                photo = load_bundled_image(name, max_side)
                for frame in range(frames):
                    # Each frame draws from its own stream, so a test frame stays the same
                    # whatever the training photos, frame counts or defocus: results compare.
                    rng = np.random.default_rng([seed, split_id, zlib.crc32(name.encode()), frame])
                    # Training frames show the photo at another scale and orientation each, so
                    # a handful of photos give many textures; test frames are the photo as is.
                    sharp = random_view(photo, rng) if split == "train" else photo
                    if split == "train" and defocus_prob > 0 and rng.random() < defocus_prob:
                        sharp = defocus_regions(sharp, rng, max_radius=max_defocus_radius)
                    blurry = blur_image(sharp, rng, blur)
                    write_rgb(root / split / name / "sharp" / f"{frame:06d}.png", sharp)
                    write_rgb(root / split / name / "blur" / f"{frame:06d}.png", blurry)
        manifest_path.write_text(json.dumps(manifest, indent=2))
        return root


class SyntheticDataModule(PairedDataModule):
    """The synthetic set, in GOPRO's folder layout, generated on first use in `prepare_data`."""

    name = "synthetic"

    def __init__(
        self,
        data_dir: str | Path,
        train_images: Sequence[str] = TRAIN_IMAGES,
        test_images: Sequence[str] = TEST_IMAGES,
        train_frames: int = 8,
        test_frames: int = 2,
        max_side: int = 512,
        min_blur_length: float = 5.0,
        max_blur_length: float = 15.0,
        blur_curvature: float = 0.05,
        noise_sigma: float = 0.01,
        defocus_prob: float = 0.0,
        max_defocus_radius: float = 4.0,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.generator_kwargs = {
            "train_images": list(train_images),
            "test_images": list(test_images),
            "train_frames": train_frames,
            "test_frames": test_frames,
            "max_side": max_side,
            "blur": BlurParams(
                min_length=min_blur_length,
                max_length=max_blur_length,
                curvature=blur_curvature,
                noise_sigma=noise_sigma,
            ),
            "defocus_prob": defocus_prob,
            "max_defocus_radius": max_defocus_radius,
            "seed": seed,
        }

    def find_pairs(self, split: str) -> list[ImagePair]:
        return find_gopro_pairs(self.data_dir, split, "blur")

    def prepare_data(self) -> None:
        build_synthetic_dataset(self.data_dir, **self.generator_kwargs)
