"""MNIST IDX files: reader and sample generator.

The real files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, usually gzipped (``.gz``). An IDX file is a big-endian header (two zero bytes, a
type byte, the number of dimensions, then one uint32 per dimension) followed by the values. The reader checks
everything the header promises: the magic number (0x00000803 for the 3-D uint8 images, 0x00000801 for the 1-D
uint8 labels), 28x28 images, and a byte count equal to the declared size exactly, so a truncated download or a
file with trailing bytes is refused rather than half-read. Gzip is recognised by its magic bytes, not by the
file name.
"""

from __future__ import annotations

import functools
import gzip
import struct
import zlib

import numpy as np

from retrain.errors import DataFormatError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
ROWS = COLS = 28
NUM_CLASSES = 10
CLASSES = [str(d) for d in range(NUM_CLASSES)]
# split -> (images file, labels file), as the files are named on the original site (without ``.gz``)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_MAX_DECOMPRESSED = 1 << 31  # far above the real 47 MB; refuses a decompression bomb


def file_role(name: str) -> tuple[str, str] | None:
    """``(split, "images" | "labels")`` for a real MNIST file name (plain or ``.gz``), else None."""
    base = name[:-3] if name.endswith(".gz") else name
    for split, (images, labels) in FILES.items():
        if base == images:
            return split, "images"
        if base == labels:
            return split, "labels"
    return None


def decompress(data: bytes, file: str) -> bytes:
    """The file's content: gunzipped when it starts with the gzip magic bytes, else as it is."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = inflater.decompress(data, _MAX_DECOMPRESSED)
        if inflater.unconsumed_tail:
            raise DataFormatError(file, f"gzip content must be at most {_MAX_DECOMPRESSED} bytes", "more")
        if not inflater.eof:
            raise DataFormatError(file, "gzip stream must be complete", f"stream ends early after {len(data)} compressed bytes")
        if inflater.unused_data:  # a second gzip member (concatenated .gz files are valid gzip)
            out += gzip.decompress(inflater.unused_data)
    except (zlib.error, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DataFormatError(file, "gzip stream must decompress", f"{type(exc).__name__}: {exc}") from None
    return out


def read_idx(data: bytes, file: str, kind: str | None = None) -> np.ndarray:
    """Parse one IDX file (plain or gzipped) into a uint8 array: images ``[N, 28, 28]`` or labels ``[N]``.

    ``kind`` (``"images"`` or ``"labels"``) is the content expected; when omitted it comes from a real MNIST
    file name, and an unknown name accepts either.
    """
    data = decompress(data, file)
    if kind is None:
        role = file_role(file)
        kind = role[1] if role else None
    expected = {"images": [IMAGES_MAGIC], "labels": [LABELS_MAGIC], None: [IMAGES_MAGIC, LABELS_MAGIC]}[kind]
    if len(data) < 4:
        raise DataFormatError(file, "IDX file must start with a 4-byte magic number", f"{len(data)} bytes in all")
    (magic,) = struct.unpack(">I", data[:4])
    if magic not in expected:
        want = " or ".join(f"0x{m:08X}" for m in expected)
        what = f"{kind} " if kind else ""
        raise DataFormatError(file, f"IDX {what}magic number must be {want}", f"0x{magic:08X}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(file, f"IDX header must hold {ndim} dimension sizes ({header} bytes)", f"{len(data)} bytes in all")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and dims[1:] != (ROWS, COLS):
        raise DataFormatError(file, f"images must be {ROWS}x{COLS}", f"{dims[1]}x{dims[2]}")
    declared = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != declared:
        state = "truncated" if len(data) < declared else "trailing bytes"
        raise DataFormatError(
            file,
            f"byte count must equal the header's size ({header} + {' x '.join(map(str, dims))} = {declared})",
            f"{len(data)} bytes ({state})",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_split(images_bytes: bytes, labels_bytes: bytes, names: tuple[str, str] = FILES["train"]) -> tuple[np.ndarray, np.ndarray]:
    """One split's images ``[N, 28, 28]`` and labels ``[N]`` (uint8), checked against each other.

    ``names`` are the two files' names, used in error messages.
    """
    images_name, labels_name = names
    images = read_idx(images_bytes, images_name, "images")
    labels = read_idx(labels_bytes, labels_name, "labels")
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_name} + {labels_name}",
            "image count must equal label count",
            f"{len(images)} images, {len(labels)} labels",
        )
    if len(images) == 0:
        raise DataFormatError(images_name, "a split must hold at least one image", "0 images")
    if labels.max() >= NUM_CLASSES:
        bad = int(np.flatnonzero(labels >= NUM_CLASSES)[0])
        raise DataFormatError(labels_name, f"labels must be in 0..{NUM_CLASSES - 1}", f"label {labels[bad]} at index {bad}")
    return images, labels


def write_idx(array: np.ndarray, gz: bool = False) -> bytes:
    """An IDX file for a uint8 array of 1 or 3 dimensions (gzipped, reproducibly, when ``gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim not in (1, 3):
        raise ValueError(f"MNIST IDX arrays have 1 or 3 dimensions, got shape {array.shape}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, _UBYTE, array.ndim, *array.shape)
    data = header + array.tobytes()
    return gzip.compress(data, compresslevel=6, mtime=0) if gz else data


# ---------------------------------------------------------------------------------------------------------
# sample generator

_GLYPH_SIZE = 72  # font size the digits are drawn at, before being fitted into MNIST's 20x20 box
_CANVAS = 128
_STROKES = (0, 1, 2, 3, 4)  # extra stroke width at glyph size: thin pen to thick marker
_OUT2 = 2 * ROWS  # warped at twice the size, then box-filtered down (anti-aliased, like MNIST's)
_MESH = 4  # mesh cells per side for the elastic part of the warp
_SPLIT_STREAM = {"train": 0, "test": 1}


@functools.cache
def _glyphs() -> tuple[tuple[tuple[object, float, float, float], ...], ...]:
    """Per digit and stroke width: (image, centre-of-mass x, y, ink height) of the white-on-black glyph."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=_GLYPH_SIZE)  # Pillow's embedded font: the same on every machine
    table = []
    for digit in range(NUM_CLASSES):
        row = []
        for stroke in _STROKES:
            image = Image.new("L", (_CANVAS, _CANVAS), 0)
            ImageDraw.Draw(image).text(
                (_CANVAS / 2, _CANVAS / 2), str(digit), fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255
            )
            ink = np.asarray(image, dtype=np.float64)
            ys, xs = np.nonzero(ink)
            total = ink.sum()
            cx = float((ink.sum(axis=0) * np.arange(_CANVAS)).sum() / total)
            cy = float((ink.sum(axis=1) * np.arange(_CANVAS)).sum() / total)
            row.append((image, cx, cy, float(ys.max() - ys.min() + 1)))
        table.append(tuple(row))
    return tuple(table)


def _render(rng: np.random.Generator, digit: int) -> np.ndarray:
    """One 28x28 uint8 digit: affine jitter (rotation, scale, slant, shift), an elastic wobble, pen width,
    contrast and a little sensor noise, white on black and centred by centre of mass as MNIST's are."""
    from PIL import Image

    image, cx, cy, height = _glyphs()[digit][int(rng.integers(len(_STROKES)))]
    angle = np.deg2rad(rng.uniform(-12.0, 12.0))
    scale = rng.uniform(0.8, 1.1) * (2 * 20.0) / height  # MNIST fits digits into 20 px (40 at 2x)
    aspect = rng.uniform(0.8, 1.15)
    slant = rng.uniform(-0.25, 0.25)
    shift = rng.uniform(-2.0, 2.0, size=2) * 2
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = scale * rot @ np.array([[aspect, slant], [0.0, 1.0]])
    inverse = np.linalg.inv(forward)
    centre_out = np.array([_OUT2 / 2, _OUT2 / 2]) + shift

    # Output grid vertices -> source points (the inverse affine), each nudged by a smooth random offset.
    step = _OUT2 / _MESH
    grid = np.arange(_MESH + 1) * step
    gx, gy = np.meshgrid(grid, grid)
    out_pts = np.stack([gx, gy], axis=-1) - centre_out
    src = out_pts @ inverse.T + np.array([cx, cy])
    src += rng.normal(0.0, 1.6 / scale, size=src.shape)  # about 0.8 px of wobble at 1x
    mesh = []
    for i in range(_MESH):
        for j in range(_MESH):
            box = (int(j * step), int(i * step), int((j + 1) * step), int((i + 1) * step))
            quad = (*src[i, j], *src[i + 1, j], *src[i + 1, j + 1], *src[i, j + 1])
            mesh.append((box, tuple(float(v) for v in quad)))
    warped = image.transform((_OUT2, _OUT2), Image.Transform.MESH, mesh, resample=Image.Resampling.BILINEAR)
    pixels = np.asarray(warped.reduce(2), dtype=np.float32)
    peak = max(float(pixels.max()), 1.0)
    pixels *= rng.uniform(0.85, 1.0) * 255.0 / peak
    pixels = 255.0 * (pixels / 255.0) ** rng.uniform(0.7, 1.3)  # how hard the pen pressed
    pixels += rng.normal(0.0, rng.uniform(0.0, 12.0), size=pixels.shape) * (rng.random(pixels.shape) < 0.3)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def generate_images(n: int, *, seed: int = 0, split: str = "train", offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits and labels from the ``(seed, split)`` stream, starting at sample ``offset``.

    Sample ``i`` depends only on ``(seed, split, i)``: ``offset=n`` continues where a first batch of ``n``
    ended (new images, same distribution); another seed gives another stream.
    """
    images = np.empty((n, ROWS, COLS), dtype=np.uint8)
    labels = np.empty(n, dtype=np.uint8)
    for k in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_STREAM[split], offset + k)))
        labels[k] = rng.integers(NUM_CLASSES)
        images[k] = _render(rng, int(labels[k]))
    return images, labels


def generate_mnist(n_train: int, n_test: int, seed: int = 0, *, offset: int = 0, gz: bool = False) -> dict[str, bytes]:
    """The four MNIST files (name -> bytes, ``.gz`` names and gzipped content when ``gz``) in the exact IDX
    format, holding rendered, jittered digits a small CNN learns to ~99%.

    A second batch: the same seed with ``offset`` past the first batch, or another seed.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1, got {n_train} and {n_test}")
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = generate_images(n, seed=seed, split=split, offset=offset)
        images_name, labels_name = FILES[split]
        suffix = ".gz" if gz else ""
        files[images_name + suffix] = write_idx(images, gz)
        files[labels_name + suffix] = write_idx(labels, gz)
    return files


def read_files(files: dict[str, bytes]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every complete split among ``files`` (name -> bytes, real MNIST names, plain or ``.gz``)."""
    roles = {}
    for name in files:
        role = file_role(name)
        if role is None:
            known = ", ".join(n for pair in FILES.values() for n in pair)
            raise DataFormatError(name, f"file name must be one of the MNIST files {known} (plain or .gz)", name)
        if role in roles:
            raise DataFormatError(name, "each MNIST file must appear once (plain or .gz)", f"also {roles[role]}")
        roles[role] = name
    out = {}
    for split in FILES:
        images_name, labels_name = roles.get((split, "images")), roles.get((split, "labels"))
        if images_name is None and labels_name is None:
            continue
        if images_name is None or labels_name is None:
            present = images_name or labels_name
            raise DataFormatError(present, f"the {split} split needs both its images and its labels file", f"only {present}")
        out[split] = read_split(files[images_name], files[labels_name], (images_name, labels_name))
    return out

