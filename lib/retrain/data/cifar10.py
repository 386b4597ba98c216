"""CIFAR-10, binary version: reader and sample generator.

The binary distribution holds ``data_batch_1.bin`` … ``data_batch_5.bin``, ``test_batch.bin`` and
``batches.meta.txt``. Each batch file is a run of 3073-byte records: one label byte (0-9), then 3072 pixel
bytes, the red plane, the green plane and the blue plane, each 32x32 in row-major order. The meta file lists
the ten class names, one per line.

The "python version" of the data set ships pickles under similar names. A pickle is refused, never loaded:
unpickling runs arbitrary code, and the curated snapshot must not depend on what a pickle chose to build.
"""

from __future__ import annotations

import math

import numpy as np

from retrain.errors import DataFormatError

SIDE = 32
RECORD = 1 + 3 * SIDE * SIDE  # 3073
NUM_CLASSES = 10
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"


def _is_pickle(data: bytes) -> bool:
    # Protocol 2+ pickles open with PROTO (0x80) and the protocol number; a binary record opens with a label
    # byte 0-9, so the two can never be confused.
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def read_batch(data: bytes, file: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as images ``[N, 32, 32, 3]`` (uint8, RGB, HWC) and labels ``[N]`` (uint8)."""
    if _is_pickle(data):
        raise DataFormatError(
            file,
            "binary expected, got a Python pickle (the 'python version' of CIFAR-10); land the binary version "
            "(cifar-10-binary.tar.gz: data_batch_N.bin, test_batch.bin)",
            f"pickle protocol {data[1]} header 0x80 0x{data[1]:02x}",
        )
    if len(data) == 0:
        raise DataFormatError(file, "a batch file must hold at least one record", "0 bytes")
    if len(data) % RECORD:
        raise DataFormatError(
            file,
            f"length must be a multiple of the record size {RECORD} (1 label byte + 3072 pixel bytes)",
            f"{len(data)} bytes = {len(data) // RECORD} records + {len(data) % RECORD} bytes",
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].copy()
    if labels.max() >= NUM_CLASSES:
        bad = int(np.flatnonzero(labels >= NUM_CLASSES)[0])
        raise DataFormatError(file, f"label bytes must be in 0..{NUM_CLASSES - 1}", f"label {labels[bad]} in record {bad}")
    images = records[:, 1:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_meta(text: str, file: str = META_FILE) -> list[str]:
    """The ten class names of ``batches.meta.txt`` (blank lines, as at the end of the real file, ignored)."""
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != NUM_CLASSES:
        raise DataFormatError(file, f"must list {NUM_CLASSES} class names, one per line", f"{len(names)} names: {names[:12]}")
    if len(set(names)) != NUM_CLASSES:
        raise DataFormatError(file, "class names must be distinct", str(names))
    return names


def write_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A binary batch file for images ``[N, 32, 32, 3]`` uint8 and labels ``[N]``."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[1:] != (SIDE, SIDE, 3) or len(images) != len(labels):
        raise ValueError(f"expected images [N, 32, 32, 3] and N labels, got {images.shape} and {len(labels)}")
    records = np.empty((len(images), RECORD), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return records.tobytes()


def write_meta(names: list[str] = CLASSES) -> str:
    return "\n".join(names) + "\n\n"  # the real file ends with a blank line


# ---------------------------------------------------------------------------------------------------------
# sample generator
#
# Each class is a drawn object (airplane seen from above, car and truck from the side, a cat's and a dog's
# face, ...) on a scene. Like the real data set, classes share colours and scenes (horses and deer on grass,
# cars and trucks on roads, cats and dogs indoors), differ in shape details (antlers vs a mane, pointed vs
# hanging ears, cab and cargo box vs bonnet and cabin) and come with random pose, size, colour, clutter,
# lighting and noise, so a small CNN learns them well above chance but not perfectly.

_HI = 2 * SIDE  # drawn at 64x64, then box-filtered to 32x32
_SCENES = ("sky", "water", "grass", "forest", "road", "indoor")
# scene probabilities per class; the rest of the mass is spread over every scene
_CLASS_SCENES = {
    0: {"sky": 0.7},
    1: {"road": 0.65},
    2: {"sky": 0.35, "grass": 0.2, "forest": 0.2},
    3: {"indoor": 0.55, "grass": 0.15},
    4: {"forest": 0.45, "grass": 0.35},
    5: {"indoor": 0.4, "grass": 0.35},
    6: {"grass": 0.45, "forest": 0.3},
    7: {"grass": 0.65, "forest": 0.1},
    8: {"water": 0.8},
    9: {"road": 0.65},
}


def _jitter(rng, rgb, amount=30):
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in rgb)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _darker(rgb, factor=0.6):
    return tuple(int(c * factor) for c in rgb)


class _Pen:
    """Draws in object coordinates (units of the object's size) with pose: centre, size, rotation, mirror."""

    def __init__(self, draw, cx, cy, size, angle, mirror):
        self.draw, self.cx, self.cy, self.size = draw, cx, cy, size
        self.cos, self.sin, self.mirror = math.cos(angle), math.sin(angle), -1.0 if mirror else 1.0

    def pt(self, u, v):
        u *= self.mirror
        return (self.cx + self.size * (u * self.cos - v * self.sin), self.cy + self.size * (u * self.sin + v * self.cos))

    def poly(self, points, fill):
        self.draw.polygon([self.pt(u, v) for u, v in points], fill=fill)

    def ellipse(self, u, v, ru, rv, fill, tilt=0.0, n=20):
        c, s = math.cos(tilt), math.sin(tilt)
        pts = []
        for k in range(n):
            t = 2 * math.pi * k / n
            x, y = ru * math.cos(t), rv * math.sin(t)
            pts.append((u + x * c - y * s, v + x * s + y * c))
        self.poly(pts, fill)

    def rect(self, u0, v0, u1, v1, fill):
        self.poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], fill)

    def line(self, points, fill, width):
        self.draw.line([self.pt(u, v) for u, v in points], fill=fill, width=max(1, int(round(width * self.size))), joint="curve")


def _scene(draw, rng, scene: str) -> float:
    """Paint a background; returns the horizon's y (where ground or water begins)."""
    h = _HI
    horizon = float(rng.uniform(0.35, 0.65) * h)

    def gradient(y0, y1, top, bottom):
        for y in range(int(y0), int(y1) + 1):
            t = (y - y0) / max(y1 - y0, 1)
            draw.line([(0, y), (h, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))

    sky = _jitter(rng, (110, 160, 225), 25)
    if scene == "sky":
        gradient(0, h, _jitter(rng, (70, 120, 210), 25), _jitter(rng, (190, 215, 240), 20))
        for _ in range(int(rng.integers(0, 4))):
            x, y, r = rng.uniform(0, h), rng.uniform(0, h), rng.uniform(4, 14)
            draw.ellipse([x - 2 * r, y - r, x + 2 * r, y + r], fill=_jitter(rng, (235, 235, 240), 12))
        return float(h)
    if scene == "water":
        gradient(0, horizon, sky, _jitter(rng, (190, 210, 230), 20))
        gradient(horizon, h, _jitter(rng, (40, 90, 150), 25), _jitter(rng, (20, 50, 100), 20))
        for _ in range(int(rng.integers(3, 9))):
            y = rng.uniform(horizon + 2, h)
            x = rng.uniform(0, h)
            draw.line([(x, y), (x + rng.uniform(4, 14), y)], fill=_jitter(rng, (120, 160, 200), 20), width=1)
        return horizon
    if scene == "grass":
        gradient(0, horizon, sky, _jitter(rng, (200, 220, 235), 20))
        gradient(horizon, h, _jitter(rng, (110, 160, 60), 30), _jitter(rng, (70, 120, 40), 25))
        for _ in range(int(rng.integers(0, 4))):  # bushes
            x, y, r = rng.uniform(0, h), horizon + rng.uniform(-2, 6), rng.uniform(3, 9)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(rng, (50, 100, 40), 20))
        return horizon
    if scene == "forest":
        gradient(0, h, _jitter(rng, (60, 100, 60), 25), _jitter(rng, (80, 70, 40), 25))
        for _ in range(int(rng.integers(3, 8))):  # trunks and foliage
            x, w = rng.uniform(0, h), rng.uniform(2, 6)
            draw.rectangle([x, 0, x + w, h], fill=_jitter(rng, (70, 50, 30), 15))
            r = rng.uniform(6, 14)
            y = rng.uniform(0, horizon)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(rng, (40, 90, 40), 25))
        return horizon
    if scene == "road":
        gradient(0, horizon, sky, _jitter(rng, (200, 205, 210), 20))
        for _ in range(int(rng.integers(1, 5))):  # buildings
            x, w, top = rng.uniform(-5, h), rng.uniform(8, 22), rng.uniform(0.1 * h, horizon)
            draw.rectangle([x, top, x + w, horizon], fill=_jitter(rng, (140, 130, 125), 35))
        draw.rectangle([0, horizon, h, h], fill=_jitter(rng, (90, 90, 95), 20))
        y = rng.uniform(horizon + 6, h - 2)
        for x in range(0, h, 12):
            draw.line([(x, y), (x + 6, y)], fill=_jitter(rng, (220, 210, 150), 20), width=1)
        return horizon
    # indoor: a wall, a floor and some furniture
    gradient(0, horizon, _jitter(rng, (200, 180, 150), 35), _jitter(rng, (180, 160, 130), 30))
    gradient(horizon, h, _jitter(rng, (140, 100, 70), 30), _jitter(rng, (110, 80, 55), 25))
    for _ in range(int(rng.integers(1, 4))):
        x, y, w, hh = rng.uniform(0, h), rng.uniform(0, h), rng.uniform(6, 20), rng.uniform(6, 20)
        draw.rectangle([x, y, x + w, y + hh], fill=_jitter(rng, (120, 90, 80), 50))
    return horizon


def _fur(rng, kind: str):
    palettes = {
        "cat": [(130, 130, 130), (210, 140, 70), (40, 40, 40), (230, 230, 225), (150, 110, 80)],
        "dog": [(150, 100, 60), (200, 160, 100), (40, 35, 30), (230, 225, 215), (180, 120, 60)],
        "deer": [(170, 120, 75), (150, 105, 65), (185, 140, 90)],
        "horse": [(120, 70, 40), (90, 55, 35), (40, 30, 25), (200, 195, 185), (150, 100, 60)],
    }[kind]
    return _jitter(rng, palettes[int(rng.integers(len(palettes)))], 18)


def _airplane(p: _Pen, rng):
    body = _jitter(rng, (200, 200, 205), 35)
    wing = _darker(body, rng.uniform(0.75, 0.95))
    sweep = rng.uniform(0.2, 0.6)
    for side in (-1, 1):
        p.poly([(0.3, 0), (0.3 - sweep, side * 1.1), (0.05 - sweep, side * 1.1), (-0.2, 0)], wing)
        p.poly([(-1.0, 0), (-1.25, side * 0.45), (-1.4, side * 0.45), (-1.3, 0)], wing)
    p.ellipse(0, 0, 1.4, 0.17, body)
    p.ellipse(1.15, 0, 0.12, 0.08, _jitter(rng, (60, 70, 90), 15))  # cockpit


def _automobile(p: _Pen, rng):
    paint = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.95))
    p.rect(-1.15, -0.1, 1.15, 0.35, paint)
    p.poly([(-0.6, -0.1), (-0.35, -0.5), (0.35, -0.5), (0.65, -0.1)], paint)
    glass = _jitter(rng, (150, 190, 220), 20)
    p.poly([(-0.48, -0.13), (-0.3, -0.42), (-0.03, -0.42), (-0.03, -0.13)], glass)
    p.poly([(0.03, -0.13), (0.03, -0.42), (0.3, -0.42), (0.5, -0.13)], glass)
    for u in (-0.7, 0.7):
        p.ellipse(u, 0.35, 0.23, 0.23, (25, 25, 25))
        p.ellipse(u, 0.35, 0.1, 0.1, (150, 150, 150))


def _truck(p: _Pen, rng):
    cab = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.95))
    box = cab if rng.random() < 0.3 else _jitter(rng, (215, 215, 210), 30)
    p.rect(-1.35, -0.85, 0.5, 0.3, box)
    p.rect(0.55, -0.55, 1.25, 0.3, cab)
    p.rect(0.75, -0.5, 1.15, -0.2, _jitter(rng, (150, 190, 220), 20))
    for u in (-1.0, -0.55, 0.95):
        p.ellipse(u, 0.32, 0.22, 0.22, (25, 25, 25))
        p.ellipse(u, 0.32, 0.09, 0.09, (150, 150, 150))


def _bird(p: _Pen, rng):
    body = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    p.poly([(-0.5, 0.0), (-1.05, -0.25), (-1.05, 0.2)], _darker(body, 0.8))  # tail
    p.ellipse(0, 0, 0.62, 0.36, body)
    p.ellipse(-0.1, -0.05, 0.42, 0.2, _darker(body, 0.65), tilt=-0.2)  # wing
    p.ellipse(0.58, -0.32, 0.25, 0.24, body)
    p.poly([(0.78, -0.38), (1.08, -0.3), (0.78, -0.22)], _jitter(rng, (240, 170, 40), 20))
    p.ellipse(0.65, -0.38, 0.05, 0.05, (10, 10, 10))
    for u in (-0.1, 0.15):
        p.line([(u, 0.3), (u + 0.05, 0.65)], (60, 50, 30), 0.05)


def _face_body(p: _Pen, fur, rng):
    p.ellipse(0, 1.05, 0.62, 0.55, _darker(fur, rng.uniform(0.8, 1.0)))


def _cat(p: _Pen, rng):
    fur = _fur(rng, "cat")
    _face_body(p, fur, rng)
    for side in (-1, 1):
        p.poly([(side * 0.68, -0.25), (side * 0.55, -1.05), (side * 0.12, -0.58)], fur)
        p.poly([(side * 0.56, -0.4), (side * 0.5, -0.85), (side * 0.25, -0.58)], _jitter(rng, (220, 150, 150), 15))
    p.ellipse(0, 0, 0.7, 0.62, fur)
    eye = _jitter(rng, (150, 200, 60), 30)
    for side in (-1, 1):
        p.ellipse(side * 0.28, -0.1, 0.14, 0.1, eye)
        p.ellipse(side * 0.28, -0.1, 0.03, 0.09, (10, 10, 10))
        p.line([(side * 0.2, 0.22), (side * 0.85, 0.1)], (235, 235, 235), 0.02)
    p.poly([(-0.08, 0.12), (0.08, 0.12), (0, 0.22)], (230, 130, 140))


def _dog(p: _Pen, rng):
    fur = _fur(rng, "dog")
    _face_body(p, fur, rng)
    ear = _darker(fur, rng.uniform(0.5, 0.8))
    p.ellipse(0, 0, 0.6, 0.7, fur)
    for side in (-1, 1):
        p.ellipse(side * 0.62, 0.05, 0.2, 0.5, ear, tilt=side * 0.25)
        p.ellipse(side * 0.25, -0.18, 0.07, 0.07, (15, 10, 10))
    p.ellipse(0, 0.35, 0.3, 0.23, _jitter(rng, (220, 200, 170), 25))
    p.ellipse(0, 0.22, 0.11, 0.08, (15, 10, 10))
    if rng.random() < 0.5:
        p.ellipse(0, 0.6, 0.09, 0.1, (210, 90, 100))  # tongue


def _legs(p: _Pen, color, width, length, spots):
    for u in spots:
        p.line([(u, 0.15), (u + 0.05, length)], color, width)


def _deer(p: _Pen, rng):
    fur = _fur(rng, "deer")
    _legs(p, _darker(fur, 0.85), 0.07, 1.05, (-0.6, -0.45, 0.45, 0.6))
    p.ellipse(0, 0, 0.82, 0.36, fur)
    p.poly([(0.5, -0.15), (0.75, -0.75), (0.95, -0.7), (0.8, -0.05)], fur)
    p.ellipse(0.95, -0.78, 0.25, 0.13, fur, tilt=0.3)
    p.ellipse(-0.82, -0.12, 0.1, 0.1, (240, 235, 225))  # white tail
    antler = _jitter(rng, (90, 70, 45), 15)
    for du in (-0.08, 0.1):
        base = (0.85 + du, -0.85)
        tip = (0.7 + 2 * du, -1.45)
        p.line([base, tip], antler, 0.05)
        p.line([((base[0] + tip[0]) / 2, -1.15), ((base[0] + tip[0]) / 2 + 0.2, -1.35)], antler, 0.04)
        p.line([((base[0] + tip[0]) / 2, -1.15), ((base[0] + tip[0]) / 2 - 0.2, -1.3)], antler, 0.04)


def _horse(p: _Pen, rng):
    coat = _fur(rng, "horse")
    dark = _darker(coat, 0.45)
    _legs(p, _darker(coat, 0.85), 0.13, 1.15, (-0.65, -0.48, 0.5, 0.66))
    p.line([(-0.9, -0.1), (-1.15, 0.5)], dark, 0.1)  # tail
    p.ellipse(0, 0, 0.92, 0.4, coat)
    p.poly([(0.5, -0.2), (0.85, -0.85), (1.1, -0.75), (0.85, 0.0)], coat)
    p.ellipse(1.12, -0.62, 0.36, 0.14, coat, tilt=0.9)
    p.line([(0.55, -0.3), (0.88, -0.9)], dark, 0.08)  # mane


def _frog(p: _Pen, rng):
    skin = _jitter(rng, [(80, 150, 60), (120, 140, 50), (110, 90, 50), (60, 120, 80)][int(rng.integers(4))], 20)
    for side in (-1, 1):
        p.poly([(side * 0.5, 0.2), (side * 1.05, 0.1), (side * 1.1, 0.55), (side * 0.6, 0.55)], _darker(skin, 0.8))
    p.ellipse(0, 0.1, 0.8, 0.48, skin)
    for _ in range(int(rng.integers(0, 5))):
        p.ellipse(rng.uniform(-0.5, 0.5), rng.uniform(-0.1, 0.35), 0.08, 0.07, _darker(skin, 0.55))
    for side in (-1, 1):
        p.ellipse(side * 0.4, -0.35, 0.2, 0.2, skin)
        p.ellipse(side * 0.4, -0.37, 0.1, 0.1, (15, 15, 10))
    p.line([(-0.35, 0.3), (0.35, 0.3)], _darker(skin, 0.5), 0.03)


def _ship(p: _Pen, rng):
    hull = _jitter(rng, [(40, 40, 50), (150, 40, 35), (230, 230, 230), (40, 60, 110)][int(rng.integers(4))], 20)
    top = _jitter(rng, (225, 225, 220), 20)
    p.rect(-0.45, -0.55, 0.45, -0.1, top)
    p.rect(-0.1, -0.85, 0.12, -0.5, _jitter(rng, (190, 60, 40), 30))  # funnel
    p.line([(0.8, -0.1), (0.8, -0.95)], (60, 60, 60), 0.04)  # mast
    p.poly([(-1.35, -0.12), (1.45, -0.12), (1.05, 0.32), (-1.15, 0.32)], hull)
    for k in range(4):
        p.ellipse(-0.3 + 0.2 * k, -0.33, 0.05, 0.05, (40, 50, 70))


_DRAW = [_airplane, _automobile, _bird, _cat, _deer, _dog, _frog, _horse, _ship, _truck]
_SIZE = [(11, 17), (10, 16), (7, 12), (9, 14), (9, 14), (9, 14), (9, 14), (9, 14), (10, 15), (10, 15)]
_TILT = [0.6, 0.12, 0.35, 0.2, 0.15, 0.2, 0.25, 0.15, 0.1, 0.1]  # rotation range (radians) per class


def _scene_for(rng, label: int) -> str:
    weights = _CLASS_SCENES[label]
    rest = (1.0 - sum(weights.values())) / len(_SCENES)
    probs = np.array([weights.get(s, 0.0) + rest for s in _SCENES])
    return _SCENES[int(rng.choice(len(_SCENES), p=probs / probs.sum()))]


def _render(rng: np.random.Generator, label: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter

    image = Image.new("RGB", (_HI, _HI))
    draw = ImageDraw.Draw(image)
    horizon = _scene(draw, rng, _scene_for(rng, label))
    for _ in range(int(rng.integers(0, 4))):  # clutter behind the object
        x, y, r = rng.uniform(0, _HI), rng.uniform(0, _HI), rng.uniform(2, 8)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    size = rng.uniform(*_SIZE[label])
    cx = rng.uniform(0.3, 0.7) * _HI
    if label in (1, 4, 7, 8, 9) and horizon < _HI:  # things standing on the ground or floating sit near the horizon
        cy = float(np.clip(horizon + rng.uniform(-0.2, 0.4) * size, 0.3 * _HI, 0.8 * _HI))
    else:
        cy = rng.uniform(0.3, 0.7) * _HI
    pen = _Pen(draw, cx, cy, size, rng.uniform(-_TILT[label], _TILT[label]), rng.random() < 0.5)
    _DRAW[label](pen, rng)
    if rng.random() < 0.3:  # something in front
        x, y, r = rng.uniform(0, _HI), rng.uniform(0, _HI), rng.uniform(3, 8)
        draw.rectangle([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    pixels = np.asarray(image.reduce(2), dtype=np.float32)
    pixels = (pixels - 128.0) * rng.uniform(0.7, 1.2) + 128.0 + rng.uniform(-30, 30)  # contrast, exposure
    pixels *= rng.uniform(0.85, 1.15, size=3)  # white balance
    pixels += rng.normal(0.0, rng.uniform(2.0, 12.0), size=pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def generate_images(n: int, *, seed: int = 0, stream: int = 0, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``[n, 32, 32, 3]`` and labels, balanced over the classes in shuffled order.

    Sample ``i`` depends only on ``(seed, stream, i)``; ``offset`` starts further along the stream.
    """
    labels = np.empty(n, dtype=np.uint8)
    images = np.empty((n, SIDE, SIDE, 3), dtype=np.uint8)
    for k in range(n):
        index = offset + k
        # Labels cycle through the classes in a fresh random order every 10 samples: balanced in any batch.
        cycle = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, 1 << 40, index // NUM_CLASSES)))
        labels[k] = cycle.permutation(NUM_CLASSES)[index % NUM_CLASSES]
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))
        images[k] = _render(rng, int(labels[k]))
    return images, labels


def generate_cifar10(n_per_batch: int, n_batches: int = 5, n_test: int = 1000, seed: int = 0, *, offset: int = 0) -> dict[str, bytes]:
    """CIFAR-10 binary files (name -> bytes): ``data_batch_1.bin`` … ``data_batch_<n_batches>.bin``,
    ``test_batch.bin`` and ``batches.meta.txt`` with the real class names.

    A second batch: the same seed with ``offset`` past the first (new images, same distribution), or another
    seed.
    """
    if n_per_batch < 1 or n_test < 1 or not 1 <= n_batches <= 5:
        raise ValueError(f"need n_per_batch >= 1, n_test >= 1 and 1 <= n_batches <= 5, got {n_per_batch}, {n_test}, {n_batches}")
    files = {}
    for b in range(n_batches):
        files[TRAIN_FILES[b]] = write_batch(*generate_images(n_per_batch, seed=seed, stream=b + 1, offset=offset))
    files[TEST_FILE] = write_batch(*generate_images(n_test, seed=seed, stream=0, offset=offset))
    files[META_FILE] = write_meta().encode("ascii")
    return files


def read_files(files: dict[str, bytes]) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names and ``{"train": (images, labels), "test": ...}`` from a set of binary CIFAR-10 files.

    Training batches present are concatenated in file order; a split with no file is left out.
    """
    unknown = sorted(set(files) - {*TRAIN_FILES, TEST_FILE, META_FILE})
    if unknown:
        raise DataFormatError(unknown[0], f"file name must be one of {TRAIN_FILES + [TEST_FILE, META_FILE]}", unknown[0])
    if META_FILE not in files:
        raise DataFormatError(META_FILE, "the class names file must be present", "missing")
    names = read_meta(files[META_FILE].decode("utf-8", errors="replace"))
    splits = {}
    train = [read_batch(files[name], name) for name in TRAIN_FILES if name in files]
    if train:
        splits["train"] = (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]))
    if TEST_FILE in files:
        splits["test"] = read_batch(files[TEST_FILE], TEST_FILE)
    return names, splits
