"""Vectorised rasteriser for the proving ground: flat-coloured cartoon characters over patterned backgrounds.

Every shape is a signed distance field evaluated on a pixel grid (for all frames at once, inside the shape's
bounding box over the clip) and turned into a 1-pixel anti-aliased coverage, then alpha-composited in painter's
order. So a mouth that opens by a tenth of a pixel changes the image by a tenth of a pixel's worth: the mouth
opening is a smooth function of the audio envelope, not a staircase.

Geometry is in units of U, the head's half-height in pixels (U = 0.19 * height * scale). Head-local offsets below
(u to the image right, v down) are what the readers in `readers.py` use to find each part again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from humo.proving_ground import world
from humo.proving_ground.world import ClipSpec, Identity

BASE_U = 0.19  # head half-height as a fraction of the frame height at scale 1
HAIRLINE = 0.55  # the face is the head ellipse below v = -HAIRLINE (hair above)
EYE_V = -0.12
MOUTH_V = 0.47
#: mouth semi-axes in U for a wide vowel: rx = RX0 + RX1 * opening, ry = RY0 + RY1 * opening (fully open: about
#: 10 x 6 px at 64 x 64); a round vowel has the same area with rx = RX0 + RXR * opening (about 7 x 9 px)
MOUTH_RX, MOUTH_RY, MOUTH_RXR = (0.25, 0.16), (0.05, 0.2), 0.03
HEAD_TOP = 1.16  # the head's top (hair cap included) above its centre
TORSO_TOP = 0.92
TORSO_HALF, TORSO_R = (1.55, 2.0), 0.5  # the torso: a box (half-width, half-height) with rounded corners
SHOULDER = (1.25, 1.25)  # (|u|, v) of the shoulder joints relative to the body anchor
HIP = (1.4, 3.0)  # (|u|, v) where keypoints() places a hand that is down
WAVE_HAND = (-2.15, -0.55)  # rest position of the waving hand
OBJECT_HAND = (1.95, 0.45)
OBJECT_ABOVE_HAND = 0.7
ACTION_HZ = {"still": 0.0, "waving": 2.0, "nodding": 1.6, "shaking": 1.4, "jumping": 1.5}
NOD_AMP, SHAKE_AMP, SHAKE_YAW, JUMP_AMP, WAVE_AMP = 0.3, 0.3, 0.5, 0.5, 0.25
KEYPOINTS = (
    "head",
    "head_top",
    "chin",
    "left_eye",
    "right_eye",
    "mouth",
    "neck",
    "left_shoulder",
    "right_shoulder",
    "left_hand",
    "right_hand",
)
_ARM_R, HAND_R = 0.2, 0.34
_STEM = (50, 150, 50)
_FLOWER_HEART = (250, 220, 60)
_STICK = (40, 40, 90)  # dark navy: a dark brown stick would be a thin line of "skin"


@dataclass
class Pose:
    """Per-frame state of one character, in pixels. Arrays are [T] (a single image has T = 1).

    hx, hy: head centre; bx, by: body anchor (the head's rest position, moved by jumping); U: head half-height;
    yaw: head turn in [-1, 1] (features shift sideways); opening: mouth opening 0..1; roundness: 0 wide .. 1 round;
    wave_hand / object_hand: [T, 2] hand centres or None when that arm is down.
    """

    hx: np.ndarray
    hy: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    U: float
    yaw: np.ndarray
    opening: np.ndarray
    roundness: np.ndarray
    wave_hand: np.ndarray | None
    object_hand: np.ndarray | None


def character_pose(ch: world.CharacterSpec, T: int, fps: float, width: int, height: int, opening, roundness) -> Pose:
    """Motion of a character over T frames from its action (waving, nodding, shaking, jumping or still)."""
    U = BASE_U * height * ch.scale
    t = np.arange(T, dtype=np.float32) / fps
    w = 2 * np.pi * ACTION_HZ[ch.action] * ch.rate
    ph = 2 * np.pi * ch.phase
    bx = np.full(T, ch.x * width, np.float32)
    by = np.full(T, ch.y * height, np.float32)
    zero = np.zeros(T, np.float32)
    yaw = zero.copy()
    if ch.action == "jumping":
        by = by - JUMP_AMP * U * np.abs(np.sin(0.5 * w * t + ph))
    hx, hy = bx.copy(), by.copy()
    if ch.action == "nodding":
        hy = hy + NOD_AMP * U * np.sin(w * t + ph)
    elif ch.action == "shaking":
        hx = hx + SHAKE_AMP * U * np.sin(w * t + ph)
        yaw = SHAKE_YAW * np.sin(w * t + ph)
    wave_hand = None
    if ch.action == "waving":
        wave_hand = np.stack([bx + (WAVE_HAND[0] + WAVE_AMP * np.sin(w * t + ph)) * U, by + WAVE_HAND[1] * U], 1)
    object_hand = None
    if ch.object != "none":
        object_hand = np.stack([bx + OBJECT_HAND[0] * U, by + OBJECT_HAND[1] * U], 1)
    return Pose(
        hx=hx.astype(np.float32),
        hy=hy.astype(np.float32),
        bx=bx,
        by=by.astype(np.float32),
        U=float(U),
        yaw=yaw.astype(np.float32),
        opening=np.asarray(opening, np.float32),
        roundness=np.asarray(roundness, np.float32),
        wave_hand=wave_hand,
        object_hand=object_hand,
    )


# ---------------------------------------------------------------------------------------------------------------
# Signed distance fields (pixels; negative inside). X: [1, 1, w], Y: [1, h, 1]; parameters scalars or [T, 1, 1].


def _sd_ellipse(X, Y, cx, cy, ax, ay):
    dx, dy = X - cx, Y - cy
    # A zero axis (a closed mouth) gives inf/nan distances, which every "inside" test reads as outside: nothing is
    # drawn, as intended; the warnings that would say so are silenced.
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
        grad = np.sqrt((dx / ax**2) ** 2 + (dy / ay**2) ** 2)
        # first-order distance (g - 1) / |grad g|; the epsilons make the exact centre read "deep inside"
        return (g - 1) * (g + 1e-9) / (grad + 1e-9 / np.minimum(ax, ay))


def _sd_box(X, Y, cx, cy, hw, hh, r):
    qx = np.abs(X - cx) - (hw - r)
    qy = np.abs(Y - cy) - (hh - r)
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0) - r


def _sd_capsule(X, Y, ax, ay, bx, by, r):
    pax, pay = X - ax, Y - ay
    bax, bay = bx - ax, by - ay
    h = np.clip((pax * bax + pay * bay) / np.maximum(bax * bax + bay * bay, 1e-6), 0, 1)
    return np.sqrt((pax - bax * h) ** 2 + (pay - bay * h) ** 2) - r


def _col(v):
    """Per-frame parameter [T] -> [T, 1, 1] (scalars pass through)."""
    a = np.asarray(v, np.float32)
    return a.reshape(-1, 1, 1) if a.ndim else float(a)


class Canvas:
    """Frames [T, H, W, 3] float32 (0..255) with painter's-order compositing of SDF shapes.

    With `layers` = C > 0 it also keeps, per character, the weight of that character's paint in each pixel:
    `owners` [C, T, H, W] float32 in 0..1, for the character set in `self.layer` while it is drawn. A shape of
    coverage a adds a to its character's weight and scales every weight (its own included) by (1 - a) first, the
    same blend as the colours, so a later character drawn over an earlier one takes the pixel from it. The
    colours are computed exactly as without layers."""

    def __init__(self, background: np.ndarray, T: int, layers: int = 0):
        self.img = np.repeat(background[None].astype(np.float32), T, axis=0)
        self.T, self.H, self.W = T, background.shape[0], background.shape[1]
        self.owners = np.zeros((layers, T, self.H, self.W), np.float32) if layers else None
        self.layer: int | None = None

    def window(self, xlo, xhi, ylo, yhi):
        x0, x1 = max(int(np.floor(np.min(xlo))) - 1, 0), min(int(np.ceil(np.max(xhi))) + 2, self.W)
        y0, y1 = max(int(np.floor(np.min(ylo))) - 1, 0), min(int(np.ceil(np.max(yhi))) + 2, self.H)
        if x1 <= x0 or y1 <= y0:
            return None
        X = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, None, :]
        Y = (np.arange(y0, y1, dtype=np.float32) + 0.5)[None, :, None]
        return (y0, y1, x0, x1), X, Y

    def paint(self, sdf: Callable, colour, box) -> tuple | None:
        """Composite `colour` with coverage clip(0.5 - sdf(X, Y)) inside box (xlo, xhi, ylo, yhi).
        Returns (coverage [T|1, h, w], (y0, y1, x0, x1)) or None when the box is off-frame."""
        win = self.window(*box)
        if win is None:
            return None
        (y0, y1, x0, x1), X, Y = win
        a = np.clip(0.5 - sdf(X, Y), 0.0, 1.0).astype(np.float32)
        a = np.broadcast_to(a, (self.T, y1 - y0, x1 - x0)) if a.shape[0] != self.T else a
        dst = self.img[:, y0:y1, x0:x1]
        dst += a[..., None] * (np.asarray(colour, np.float32) - dst)
        if self.owners is not None and self.layer is not None:
            own = self.owners[:, :, y0:y1, x0:x1]
            own *= 1 - a
            own[self.layer] += a
        return a, (y0, y1, x0, x1)


def _bbox(cx, cy, rx, ry):
    cx, cy = np.asarray(cx), np.asarray(cy)
    return (cx.min() - rx, cx.max() + rx, cy.min() - ry, cy.max() + ry)


# ---------------------------------------------------------------------------------------------------------------
# Backgrounds


def draw_background(scene: str, width: int, height: int, seed: int) -> np.ndarray:
    """Scene background [H, W, 3] float32: two colours split at the horizon plus the scene's pattern
    (sea foam, tree trunks, lit windows, stars, snowflakes, grass tufts) at seed-dependent places."""
    s = world.SCENES[scene]
    rng = np.random.default_rng(seed)
    hz = s["horizon"] * height
    Y = (np.arange(height, dtype=np.float32) + 0.5)[:, None, None]
    X = (np.arange(width, dtype=np.float32) + 0.5)[None, :, None]
    top, bottom, pat = (np.asarray(s[k], np.float32) for k in ("top", "bottom", "pattern"))
    a = np.clip(Y - hz + 0.5, 0, 1)
    img = np.broadcast_to(top + a * (bottom - top), (height, width, 3)).copy()
    X2, Y2 = X[..., 0], Y[..., 0]
    cov = np.zeros((height, width), np.float32)
    if scene == "beach":  # foam lines on the sea
        for _ in range(3):
            y = rng.uniform(hz + 0.06 * height, height)
            x0, x1 = sorted(rng.uniform(0, width, 2))
            d = _sd_capsule(X2, Y2, x0, y, max(x1, x0 + 0.2 * width), y, 0.012 * height)
            cov = np.maximum(cov, np.clip(0.5 - d, 0, 1))
    elif scene == "forest":  # tree trunks
        for x in rng.uniform(0, width, 5):
            cov = np.maximum(cov, np.clip(0.5 - (np.abs(X2 - x) - 0.03 * width), 0, 1))
    elif scene == "city":  # lit windows in a grid above the street
        p = 0.14 * height
        gx = np.floor(X2 / p)
        gy = np.floor(Y2 / p)
        lit = rng.uniform(size=(int(height / p) + 2, int(width / p) + 2)) < 0.5
        d = _sd_box(X2 - gx * p, Y2 - gy * p, p / 2, p / 2, 0.03 * height, 0.03 * height, 0.0)
        on = lit[gy.astype(int).clip(0, lit.shape[0] - 1), gx.astype(int).clip(0, lit.shape[1] - 1)]
        cov = np.where(on & (Y2 < hz - 0.02 * height), np.clip(0.5 - d, 0, 1), 0)
    elif scene in ("night", "snow"):  # stars / snowflakes
        n = 22 if scene == "night" else 30
        ymax = hz if scene == "night" else height
        for x, y in zip(rng.uniform(0, width, n), rng.uniform(0, ymax, n)):
            d = np.sqrt((X2 - x) ** 2 + (Y2 - y) ** 2) - 0.008 * height - 0.3
            cov = np.maximum(cov, np.clip(0.5 - d, 0, 1))
    elif scene == "park":  # grass tufts
        for x, y in zip(rng.uniform(0, width, 8), rng.uniform(hz + 0.03 * height, height, 8)):
            d = _sd_ellipse(X2, Y2, x, y, 0.05 * height, 0.02 * height)
            cov = np.maximum(cov, np.clip(0.5 - d, 0, 1))
    img += cov[..., None] * (pat - img)
    return img


def apply_lighting(img: np.ndarray, gain: float, gx: float, gy: float) -> np.ndarray:
    """Directional lighting: img [..., H, W, 3] * gain * (1 + gx (x - 1/2) + gy (y - 1/2)) in frame units."""
    H, W = img.shape[-3], img.shape[-2]
    y = (np.arange(H, dtype=np.float32) + 0.5) / H - 0.5
    x = (np.arange(W, dtype=np.float32) + 0.5) / W - 0.5
    f = gain * (1 + gx * x[None, :] + gy * y[:, None])
    return img * f[..., None]


# ---------------------------------------------------------------------------------------------------------------
# Characters


def draw_character(cv: Canvas, p: Pose, ident: Identity, obj: str) -> np.ndarray:
    """Paint one character; returns its face coverage [T, H, W] float32 (head skin below the hairline,
    including eyes, glasses and mouth: the ground-truth face mask before thresholding)."""
    U = p.U
    ax = world.FACE_SHAPES[ident.face_shape] * U
    skin = world.SKIN_TONES[ident.skin]
    hair = world.HAIR_COLOURS[ident.hair_colour]
    hx, hy, bx = _col(p.hx), _col(p.hy), _col(p.bx)

    # torso (extends below the frame)
    top = p.by + TORSO_TOP * U
    hw, hh = TORSO_HALF[0] * U, TORSO_HALF[1] * U
    cv.paint(
        lambda X, Y: _sd_box(X, Y, bx, _col(top) + hh, hw, hh, TORSO_R * U),
        world.SHIRT_COLOURS[ident.shirt],
        _bbox(p.bx, top + hh, hw, hh),
    )
    # raised arms (bare skin) from the shoulders to the hands
    for hand, side in ((p.wave_hand, -1), (p.object_hand, 1)):
        if hand is None:
            continue
        sx, sy = p.bx + side * SHOULDER[0] * U, p.by + SHOULDER[1] * U
        hxx, hyy = hand[:, 0], hand[:, 1]
        cv.paint(
            lambda X, Y, sx=sx, sy=sy, a=hxx, b=hyy: _sd_capsule(
                X, Y, _col(sx), _col(sy), _col(a), _col(b), _ARM_R * U
            ),
            skin,
            (min(sx.min(), hxx.min()) - U, max(sx.max(), hxx.max()) + U, min(sy.min(), hyy.min()) - U, sy.max() + U),
        )
    # hair behind the head
    if ident.hair_style == "long":
        for side in (-1, 1):
            cx = p.hx + side * (ax + 0.1 * U)
            cy = p.hy + 0.3 * U
            cv.paint(
                lambda X, Y, cx=cx, cy=cy: _sd_box(X, Y, _col(cx), _col(cy), 0.22 * U, 0.8 * U, 0.18 * U),
                hair,
                _bbox(cx, cy, 0.22 * U, 0.8 * U),
            )
    elif ident.hair_style == "pigtails":
        for side in (-1, 1):
            cx = p.hx + side * (ax + 0.36 * U)
            cy = p.hy - 0.45 * U
            cv.paint(
                lambda X, Y, cx=cx, cy=cy: _sd_ellipse(X, Y, _col(cx), _col(cy), 0.33 * U, 0.33 * U),
                hair,
                _bbox(cx, cy, 0.33 * U, 0.33 * U),
            )
    elif ident.hair_style == "bun":
        cy = p.hy - 1.3 * U
        cv.paint(
            lambda X, Y: _sd_ellipse(X, Y, hx, _col(cy), 0.36 * U, 0.36 * U), hair, _bbox(p.hx, cy, 0.36 * U, 0.36 * U)
        )

    # head, then the hair cap over its top: the face is what the cap leaves
    head_box = _bbox(p.hx, p.hy, ax, U)
    head = cv.paint(lambda X, Y: _sd_ellipse(X, Y, hx, hy, ax, U), skin, head_box)
    cap_sdf = lambda X, Y: np.maximum(
        _sd_ellipse(X, Y, hx, hy - 0.06 * U, ax + 0.1 * U, 1.1 * U), Y - (hy - HAIRLINE * U)
    )
    cv.paint(cap_sdf, hair, _bbox(p.hx, p.hy - 0.06 * U, ax + 0.1 * U, 1.1 * U))
    face = np.zeros((cv.T, cv.H, cv.W), np.float32)
    if head is not None:
        a, (y0, y1, x0, x1) = head
        X = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, None, :]
        Y = (np.arange(y0, y1, dtype=np.float32) + 0.5)[None, :, None]
        face[:, y0:y1, x0:x1] = a * (1 - np.clip(0.5 - cap_sdf(X, Y), 0, 1))

    # eyes or sunglasses; features shift sideways with yaw
    shift = p.yaw * 0.3 * ax
    ey = p.hy + EYE_V * U
    for side in (-1, 1):
        ex = p.hx + side * 0.4 * ax + shift
        if ident.glasses == "sunglasses":
            cv.paint(
                lambda X, Y, ex=ex: _sd_box(X, Y, _col(ex), _col(ey), 0.25 * U, 0.14 * U, 0.07 * U),
                world.GLASSES_COLOUR,
                _bbox(ex, ey, 0.25 * U, 0.14 * U),
            )
        else:
            cv.paint(
                lambda X, Y, ex=ex: _sd_ellipse(X, Y, _col(ex), _col(ey), 0.19 * U, 0.13 * U),
                world.EYE_WHITE,
                _bbox(ex, ey, 0.19 * U, 0.13 * U),
            )
            px = ex + p.yaw * 0.06 * U
            cv.paint(
                lambda X, Y, px=px: _sd_ellipse(X, Y, _col(px), _col(ey), 0.085 * U, 0.085 * U),
                world.PUPIL_COLOUR,
                _bbox(px, ey, 0.085 * U, 0.085 * U),
            )
    if ident.glasses == "sunglasses":
        bx_ = p.hx + shift
        cv.paint(
            lambda X, Y: _sd_box(X, Y, _col(bx_), _col(ey - 0.04 * U), 0.4 * ax, 0.035 * U, 0.0),
            world.GLASSES_COLOUR,
            _bbox(bx_, ey - 0.04 * U, 0.4 * ax, 0.035 * U),
        )

    # mouth: the opening sets its area, the vowel its shape (wide vs round, same area)
    o, r = p.opening, p.roundness
    rx_w, ry_w = MOUTH_RX[0] + MOUTH_RX[1] * o, MOUTH_RY[0] + MOUTH_RY[1] * o
    rx_r = MOUTH_RX[0] + MOUTH_RXR * o
    ry_r = rx_w * ry_w / rx_r
    rx, ry = (rx_w + r * (rx_r - rx_w)) * U, (ry_w + r * (ry_r - ry_w)) * U
    mx, my = p.hx + shift, p.hy + MOUTH_V * U
    cv.paint(
        lambda X, Y: _sd_ellipse(X, Y, _col(mx), _col(my), _col(rx), _col(ry)),
        world.MOUTH_COLOUR,
        _bbox(mx, my, float(np.max(rx)), float(np.max(ry))),
    )

    # hands and the held object
    for hand in (p.wave_hand, p.object_hand):
        if hand is not None:
            a, b = hand[:, 0], hand[:, 1]
            cv.paint(
                lambda X, Y, a=a, b=b: _sd_ellipse(X, Y, _col(a), _col(b), HAND_R * U, HAND_R * U),
                skin,
                _bbox(a, b, HAND_R * U, HAND_R * U),
            )
    if obj != "none" and p.object_hand is not None:
        draw_object(cv, obj, p.object_hand[:, 0], p.object_hand[:, 1], U)
    return face


def draw_object(cv: Canvas, obj: str, hand_x: np.ndarray, hand_y: np.ndarray, U: float) -> None:
    """Paint a held object above the hand at (hand_x, hand_y) [T]."""
    ox, oy = hand_x, hand_y - OBJECT_ABOVE_HAND * U
    cx, cy, hy = _col(ox), _col(oy), _col(hand_y)
    colour = world.OBJECTS[obj]
    if obj == "ball":
        cv.paint(lambda X, Y: _sd_ellipse(X, Y, cx, cy, 0.5 * U, 0.5 * U), colour, _bbox(ox, oy, 0.5 * U, 0.5 * U))
    elif obj == "book":
        cv.paint(
            lambda X, Y: _sd_box(X, Y, cx, cy, 0.42 * U, 0.55 * U, 0.06 * U), colour, _bbox(ox, oy, 0.42 * U, 0.55 * U)
        )
    elif obj == "cup":
        cv.paint(
            lambda X, Y: np.abs(np.sqrt((X - cx - 0.4 * U) ** 2 + (Y - cy) ** 2) - 0.2 * U) - 0.07 * U,
            colour,
            _bbox(ox + 0.4 * U, oy, 0.3 * U, 0.3 * U),
        )
        cv.paint(
            lambda X, Y: _sd_box(X, Y, cx, cy, 0.36 * U, 0.45 * U, 0.08 * U), colour, _bbox(ox, oy, 0.36 * U, 0.45 * U)
        )
    elif obj == "flower":
        cv.paint(
            lambda X, Y: _sd_capsule(X, Y, cx, cy + 0.1 * U, cx, hy, 0.06 * U),
            _STEM,
            _bbox(ox, oy + 0.5 * U, 0.1 * U, 0.8 * U),
        )
        cv.paint(
            lambda X, Y: _sd_ellipse(X, Y, cx, cy - 0.1 * U, 0.46 * U, 0.46 * U),
            colour,
            _bbox(ox, oy - 0.1 * U, 0.46 * U, 0.46 * U),
        )
        cv.paint(
            lambda X, Y: _sd_ellipse(X, Y, cx, cy - 0.1 * U, 0.12 * U, 0.12 * U),
            _FLOWER_HEART,
            _bbox(ox, oy - 0.1 * U, 0.12 * U, 0.12 * U),
        )
    elif obj == "umbrella":
        cv.paint(
            lambda X, Y: _sd_capsule(X, Y, cx, cy + 0.1 * U, cx, hy, 0.05 * U),
            _STICK,
            _bbox(ox, oy + 0.5 * U, 0.1 * U, 0.8 * U),
        )
        cv.paint(
            lambda X, Y: np.maximum(_sd_ellipse(X, Y, cx, cy + 0.15 * U, 0.62 * U, 0.62 * U), Y - (cy + 0.15 * U)),
            colour,
            _bbox(ox, oy, 0.62 * U, 0.62 * U),
        )


def keypoints(p: Pose, ident: Identity, width: int, height: int) -> np.ndarray:
    """Pose track [T, K, 3] (x, y, visible) in pixels for the KEYPOINTS names. A raised-arm hand is at its
    drawn place; a hand that is down is placed at the hip (usually below the frame)."""
    U = p.U
    ax = world.FACE_SHAPES[ident.face_shape] * U
    shift = p.yaw * 0.3 * ax
    T = p.hx.shape[0]
    down_l = np.stack([p.bx - HIP[0] * U, p.by + HIP[1] * U], 1)
    down_r = np.stack([p.bx + HIP[0] * U, p.by + HIP[1] * U], 1)
    pts = [
        (p.hx, p.hy),
        (p.hx, p.hy - HEAD_TOP * U),
        (p.hx, p.hy + U),
        (p.hx - 0.4 * ax + shift, p.hy + EYE_V * U),
        (p.hx + 0.4 * ax + shift, p.hy + EYE_V * U),
        (p.hx + shift, p.hy + MOUTH_V * U),
        (p.bx, p.by + TORSO_TOP * U),
        (p.bx - SHOULDER[0] * U, p.by + SHOULDER[1] * U),
        (p.bx + SHOULDER[0] * U, p.by + SHOULDER[1] * U),
        tuple((p.wave_hand if p.wave_hand is not None else down_l).T),
        tuple((p.object_hand if p.object_hand is not None else down_r).T),
    ]
    xy = np.stack([np.stack([np.broadcast_to(x, T), np.broadcast_to(y, T)], -1) for x, y in pts], 1)
    vis = (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height)
    return np.concatenate([xy, vis[..., None]], -1).astype(np.float32)


@dataclass
class RenderedClip:
    """frames: [T, H, W, 3] uint8; face_masks: [C, T, H, W] bool per character; keypoints: [C, T, K, 3];
    person_masks: [C, T, H, W] bool per character, everything of that character in view (head, hair, torso,
    arms, hands, a held object), each pixel given to the character drawn on top (disjoint across characters)."""

    frames: np.ndarray
    face_masks: np.ndarray
    keypoints: np.ndarray
    person_masks: np.ndarray


def render_clip(spec: ClipSpec, openings: list[np.ndarray], roundness: list[np.ndarray]) -> RenderedClip:
    """Render a clip; openings / roundness: one [T] array per character (from its speech track)."""
    T, W, H = spec.num_frames, spec.width, spec.height
    C = len(spec.characters)
    cv = Canvas(draw_background(spec.scene, W, H, spec.pattern_seed), T, layers=C)
    masks, kps = [], []
    for k, (ch, o, r) in enumerate(zip(spec.characters, openings, roundness)):
        pose = character_pose(ch, T, spec.fps, W, H, o, r)
        cv.layer = k
        masks.append(draw_character(cv, pose, ch.identity, ch.object) >= 0.5)
        kps.append(keypoints(pose, ch.identity, W, H))
    frames = np.clip(np.round(cv.img), 0, 255).astype(np.uint8)
    # a pixel is a character's where at least half of its final colour is that character's paint (the face
    # masks' threshold); the weights sum to at most 1, so only an exact tie at 1/2 could give a pixel to two
    # characters: the one drawn later (on top) keeps it
    person = cv.owners >= 0.5
    for k in range(C - 2, -1, -1):
        person[k] &= ~person[k + 1 :].any(0)
    return RenderedClip(frames=frames, face_masks=np.stack(masks), keypoints=np.stack(kps), person_masks=person)


def render_reference(
    ident: Identity, rng: np.random.Generator, width: int = 64, height: int = 64
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A reference image of `ident` with varied appearance (scale, position, head turn, background, lighting,
    mouth), never showing an action or an object, so copying it cannot satisfy a prompt.

    Returns (image [H, W, 3] uint8, face mask [H, W] bool, the appearance parameters drawn).
    """
    params = {
        "scene": str(rng.choice(list(world.SCENES))),
        "scale": float(rng.uniform(0.8, 1.15)),
        "x": float(0.5 + rng.uniform(-0.12, 0.12)),
        "y": float(0.45 + rng.uniform(-0.04, 0.04)),
        "yaw": float(rng.uniform(-0.6, 0.6)),
        "opening": float(0.0 if rng.uniform() < 0.7 else rng.uniform(0.0, 0.5)),
        "roundness": float(rng.integers(2)),
        "gain": float(rng.uniform(0.95, 1.05)),
        "gx": float(rng.uniform(-0.15, 0.15)),
        "gy": float(rng.uniform(-0.15, 0.15)),
        "pattern_seed": int(rng.integers(1 << 30)),
    }
    return (*render_still(ident, width=width, height=height, **params), params)


def reference_boxes(ident: Identity, params: dict, face: np.ndarray) -> dict[str, list[int]]:
    """The ground-truth regions of a reference image drawn with `params` (`render_reference`), pixels ``x0, y0, x1,
    y1`` (end exclusive) inside the image: "face", the face mask's box; "person", the character's whole drawn
    region (hair, head, torso; the torso runs below the frame). The crops of training's references come from
    these (`humo.reference_crops`)."""
    height, width = face.shape
    ys, xs = np.nonzero(face)
    face_box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    U = BASE_U * height * params["scale"]
    ax = world.FACE_SHAPES[ident.face_shape] * U
    hx, hy = params["x"] * width, params["y"] * height
    side = {"long": ax + 0.32 * U, "pigtails": ax + 0.69 * U}.get(ident.hair_style, ax + 0.1 * U)
    half = max(TORSO_HALF[0] * U, side)
    top = hy - (1.66 if ident.hair_style == "bun" else HEAD_TOP) * U
    bottom = hy + (TORSO_TOP + 2 * TORSO_HALF[1]) * U
    person = [max(0, int(np.floor(hx - half))), max(0, int(np.floor(top))), min(width, int(np.ceil(hx + half))),
              min(height, int(np.ceil(bottom)))]  # fmt: skip
    return {"face": face_box, "person": person}


def render_still(
    ident: Identity,
    *,
    width: int = 64,
    height: int = 64,
    scene: str = "park",
    scale: float = 1.0,
    x: float = 0.5,
    y: float = 0.44,
    yaw: float = 0.0,
    opening: float = 0.0,
    roundness: float = 0.0,
    gain: float = 1.0,
    gx: float = 0.0,
    gy: float = 0.0,
    pattern_seed: int = 0,
    obj: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """One still image of `ident` (no action): (image [H, W, 3] uint8, face mask [H, W] bool)."""
    U = BASE_U * height * scale
    one = lambda v: np.full(1, v, np.float32)
    pose = Pose(
        hx=one(x * width),
        hy=one(y * height),
        bx=one(x * width),
        by=one(y * height),
        U=U,
        yaw=one(yaw),
        opening=one(opening),
        roundness=one(roundness),
        wave_hand=None,
        object_hand=None
        if obj == "none"
        else np.array([[x * width + OBJECT_HAND[0] * U, y * height + OBJECT_HAND[1] * U]]),
    )
    cv = Canvas(draw_background(scene, width, height, pattern_seed), 1)
    face = draw_character(cv, pose, ident, obj)
    img = cv.img[0]
    if gain != 1.0 or gx or gy:
        img = apply_lighting(img, gain, gx, gy)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), face[0] >= 0.5
