"""Analytic readers: recover the proving ground's factors from pixels and audio, with no learned weights.

Because we know how the world is drawn, each reader measures one thing where the renderer puts it:

- `find_faces`: skin is the only colour in the world near the line of skin tones (checked by the tests), so
  a face is the largest blob of skin-coloured pixels; its rows are filled (eyes, glasses, mouth) and its widest
  row, centre column and centroid give the head centre (cx, cy), its half-height U and half-width.
- Every other reader samples the frame on a grid placed in head units around that face (bilinear, so it works
  at any resolution), and compares median colours or colour fractions with the world's palettes.
- `audio_envelope` is the short-time RMS of the audio per video frame: the synthesiser keeps the voice at unit
  power per unit envelope for every vowel, so this recovers the loudness envelope from the file alone.
- `read_pose` places the renderer's tracked points: the head from the face, the shoulders from the torso box
  fitted to the shirt's colour, raised hands where a hand-sized disc of the face's skin tone sits.

Class decisions that depend on geometry (face shape, hair style, glasses) compare features with prototypes
measured once by running the same feature extractors on clean renders (`_prototypes`, cached, ~0.2 s), so the
readers stay consistent with the renderer by construction. Everything is vectorised over frames.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np

from humo.proving_ground import render, world
from humo.proving_ground.render import HAIRLINE, MOUTH_V

_SKIN = np.array(list(world.SKIN_TONES.values()), np.float32)
_SKIN_T = (0.8, 1.2)  # brightness range of the skin cones (lighting, shading, codec drift)
_SKIN_D = (25.0, 50.0)  # colour distance: <= 25 is skin, >= 50 is not
_COLOUR_SIGMA = 25.0
_WIDTH_V = 0.1  # head-local v of the rows where the face width is measured


# ---------------------------------------------------------------------------------------------------------------
# Pixel helpers


def _as_float(frames: np.ndarray) -> np.ndarray:
    """uint8/float frames [T, H, W, 3] or an image [H, W, 3] -> float32 [T, H, W, 3] in 0..255."""
    a = np.asarray(frames)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3] or an image [H, W, 3], got shape {a.shape}")
    a = a.astype(np.float32)
    if a.size and a.max() <= 1.0 and np.asarray(frames).dtype != np.uint8:
        a = a * 255.0  # float frames in 0..1
    return a


def skin_distance(img: np.ndarray) -> np.ndarray:
    """Distance [...,] in RGB units from each pixel [..., 3] to the nearest skin-tone cone (tone x brightness)."""
    best = None
    for s in _SKIN:
        t = np.clip((img @ s) / float(s @ s), *_SKIN_T)
        d = np.sqrt(((img - t[..., None] * s) ** 2).sum(-1))
        best = d if best is None else np.minimum(best, d)
    return best


def skin_probability(img: np.ndarray) -> np.ndarray:
    """Soft skin mask [...] in 0..1 from colour distance to the skin cones."""
    lo, hi = _SKIN_D
    return np.clip((hi - skin_distance(img)) / (hi - lo), 0.0, 1.0)


def _dominant_colour(px: np.ndarray, radius: float = 10.0, max_px: int = 400) -> np.ndarray:
    """The most common colour of pixels [N, 3]: the mean of the densest cluster of radius `radius`.

    Unlike a median, this ignores the skin darkened by blurred-in sunglasses or a mouth, which stays on the skin
    cone (darker skin) and would drag a median towards the next darker tone."""
    if len(px) == 0:
        return np.full(3, np.nan, np.float32)
    if len(px) > max_px:
        px = px[np.linspace(0, len(px) - 1, max_px).astype(np.int64)]
    near = ((px[:, None, :] - px[None, :, :]) ** 2).sum(-1) < radius * radius
    return px[near[near.sum(1).argmax()]].mean(0).astype(np.float32)


def _tone_probability(img: np.ndarray, tone: np.ndarray, dist: tuple[float, float] = _SKIN_D) -> np.ndarray:
    """Soft mask [...] of pixels [..., 3] near the cone of one skin colour `tone` [3] (brightness 0.8..1.2):
    1 within dist[0] of it, 0 beyond dist[1]."""
    t = np.clip((img @ tone) / max(float(tone @ tone), 1e-6), *_SKIN_T)
    d = np.sqrt(((img - t[..., None] * tone) ** 2).sum(-1))
    lo, hi = dist
    return np.clip((hi - d) / (hi - lo), 0.0, 1.0)


def _dilate(m: np.ndarray, r: int = 1) -> np.ndarray:
    """Max filter with a (2r+1)^2 square over the last two axes (bool or float)."""
    out = m.copy()
    for axis in (-1, -2):
        src = out.copy()
        n = src.shape[axis]
        for k in range(1, r + 1):
            a = [slice(None)] * src.ndim
            b = [slice(None)] * src.ndim
            a[axis], b[axis] = slice(k, n), slice(0, n - k)
            out[tuple(a)] = np.maximum(out[tuple(a)], src[tuple(b)])
            out[tuple(b)] = np.maximum(out[tuple(b)], src[tuple(a)])
    return out


def _box_mean(m: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 box (zero padding) over the last two axes."""
    c = np.pad(m.astype(np.float32), [(0, 0)] * (m.ndim - 2) + [(r + 1, r), (r + 1, r)])
    c = c.cumsum(-1).cumsum(-2)
    k = 2 * r + 1
    s = c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
    return s / (k * k)


def _reconstruct(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Connected part of `mask` [T, H, W] bool reachable from `seed` (8-connectivity)."""
    m = seed & mask
    for i in range(mask.shape[-1] + mask.shape[-2]):
        d = _dilate(m, 1) & mask
        if i % 4 == 3 and np.array_equal(d, m):
            break
        m = d
    return m


def sample_grid(frames: np.ndarray, cx, cy, scale, us, vs) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of frames [T, H, W, C] on a grid placed per frame at (cx + u*scale, cy + v*scale).

    cx, cy: [T] pixel positions; scale: [T] or scalar pixels per unit; us: [nu], vs: [nv] offsets in units.
    Returns (values [T, nv, nu, C], valid [T, nv, nu] bool: inside the frame).
    """
    T, H, W = frames.shape[:3]
    cx, cy = np.broadcast_to(np.asarray(cx, np.float32), (T,)), np.broadcast_to(np.asarray(cy, np.float32), (T,))
    sc = np.broadcast_to(np.asarray(scale, np.float32), (T,))
    x = cx[:, None, None] + np.asarray(us, np.float32)[None, None, :] * sc[:, None, None] - 0.5
    y = cy[:, None, None] + np.asarray(vs, np.float32)[None, :, None] * sc[:, None, None] - 0.5
    x, y = np.broadcast_arrays(x, y)
    valid = (x >= -0.5) & (x <= W - 0.5) & (y >= -0.5) & (y <= H - 0.5)
    x, y = np.clip(x, 0, W - 1), np.clip(y, 0, H - 1)
    x0, y0 = (
        np.minimum(np.floor(x).astype(np.int64), W - 2 if W > 1 else 0),
        np.minimum(np.floor(y).astype(np.int64), H - 2 if H > 1 else 0),
    )
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    t = np.arange(T)[:, None, None]
    v = (
        frames[t, y0, x0] * (1 - fx) * (1 - fy)
        + frames[t, y0, x1] * fx * (1 - fy)
        + frames[t, y1, x0] * (1 - fx) * fy
        + frames[t, y1, x1] * fx * fy
    )
    return v.astype(np.float32), valid


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    n = max(2, int(round((hi - lo) / step)) + 1)
    return np.linspace(lo, hi, n, dtype=np.float32)


def _masked_median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-frame median colour: values [T, ..., 3], valid [T, ...] -> [T, 3] (NaN where nothing is valid)."""
    T = values.shape[0]
    v = values.reshape(T, -1, 3).astype(np.float32).copy()
    ok = valid.reshape(T, -1)
    v[~ok] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN
        return np.nanmedian(v, axis=1)


def _softmax_dist(d2: np.ndarray, sigma: float) -> np.ndarray:
    """Probabilities [..., K] from squared distances [..., K]: softmax(-d2 / (2 sigma^2))."""
    z = -d2 / (2 * sigma * sigma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (nothing measurable) stay NaN
        z = z - np.nanmax(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _palette_probs(colours: np.ndarray, palette: dict[str, tuple[int, int, int]], sigma: float = _COLOUR_SIGMA):
    """Colours [T, 3] -> probabilities [T, K] over the palette (rows of NaN colours give NaN)."""
    p = np.asarray(list(palette.values()), np.float32)
    d2 = ((colours[:, None, :] - p[None]) ** 2).sum(-1)
    return _softmax_dist(d2, sigma)


# ---------------------------------------------------------------------------------------------------------------
# Faces


@dataclass
class FaceTrack:
    """One face over T frames: head centre (cx, cy), half-height U and half-width ax in pixels [T] (NaN where
    the face was not found), valid [T], mask [T, H, W] bool (the filled face region), skin [3] median skin RGB."""

    cx: np.ndarray
    cy: np.ndarray
    U: np.ndarray
    ax: np.ndarray
    valid: np.ndarray
    mask: np.ndarray
    skin: np.ndarray

    @property
    def scale(self) -> float:
        """Median U over valid frames (pixels)."""
        return float(np.nanmedian(self.U[self.valid])) if self.valid.any() else float("nan")


def main_face(frames: np.ndarray) -> FaceTrack | None:
    """The face of a one-person clip (frames [T, H, W, 3]): `find_faces`' one track, or None where none is found."""
    faces = find_faces(frames)
    return faces[0] if faces else None


def find_faces(frames: np.ndarray, max_faces: int = 1, scale: float = 1.0) -> list[FaceTrack]:
    """Find up to `max_faces` faces per frame in frames [T, H, W, 3] (uint8 or float 0..255).

    Per frame, the faces are the largest skin blobs (seeded at the densest skin box), ranked left to right when
    more than one is asked for. Frames where a face is missing have valid = False and NaN geometry. `scale`: the
    expected head size relative to a lone character's (the multi-person layout draws heads at 0.68 or 0.5); the
    filters that drop thin skin-like bands and the smallest face accepted shrink with it.
    """
    img = _as_float(frames)
    T, H, W = img.shape[:3]
    prob = skin_probability(img)
    rb = max(2, int(round(0.1 * H * scale)))
    rs = max(1, int(round(0.025 * H * scale)))
    min_mass = (0.06 * H * scale) ** 2
    # Blurred or anti-aliased edges between two non-skin colours mix to skin-like colours along thin bands (a
    # red shirt's outline on a slate wall is "dark skin"), which would join a face to its surroundings. A box
    # mean over (2 rs + 1)^2 pixels drops such bands (up to ~rs wide) below one half while it keeps a face's
    # interior at ~1 and its outline in place. A face is seeded where that smoothed skin is densest, its own
    # tone is taken there, and it is grown through pixels close to that one tone only.
    smooth = _box_mean(prob, rs)
    free = smooth > 0.5
    found = []
    for _ in range(max_faces):
        dens = _box_mean(free, rb) * free
        flat = dens.reshape(T, -1)
        k = flat.argmax(1)
        if max_faces == 1 and T > 2:
            # One character moves little within a clip: favour the seed near the clip's median seed, so that
            # a raised hand cannot take over a frame where the face is blurred or half hidden.
            ky, kx = np.divmod(k, W)
            my, mx = np.median(ky), np.median(kx)
            yy, xx = np.divmod(np.arange(H * W), W)
            prior = np.exp(-((yy - my) ** 2 + (xx - mx) ** 2) / (2 * (0.15 * H) ** 2))
            k = (flat * prior[None]).argmax(1)
        seed = np.zeros_like(free).reshape(T, -1)
        seed[np.arange(T), k] = flat[np.arange(T), k] > 0.2
        core = _reconstruct(seed.reshape(T, H, W), free)
        free &= ~_dilate(core, 2)
        pure = core & (prob > 0.8) & (smooth > 0.9)  # skin well inside the face, away from blurred features
        if not pure.any():
            break
        tone = np.median(img[pure], 0)
        tone_prob = _tone_probability(img, tone)
        comp = _reconstruct(core, _box_mean(tone_prob, rs) > 0.5)
        # the box mean rounds the blob's corners off: take back the face-toned pixels within rs of it
        comp = _dilate(comp, rs) & (tone_prob > 0.5)
        found.append((comp, pure, tone_prob))
    tracks = [_fit(p, _measure(img, p, comp, core, min_mass)) for comp, core, p in found]
    tracks = [t for t in tracks if t.valid.any()]
    if len(tracks) > 1:
        tracks.sort(key=lambda t: float(np.nanmedian(t.cx)))
    return tracks


def _measure(img: np.ndarray, prob: np.ndarray, comp: np.ndarray, core: np.ndarray, min_mass: float) -> FaceTrack:
    """Geometry of one face blob comp [T, H, W] (core: its eroded seed region, free of stray edge lines)."""
    T, H, W = comp.shape
    # fill each row between the blob's leftmost and rightmost pixel: eyes, glasses and mouth become face
    left = np.logical_or.accumulate(comp, axis=-1)
    right = np.logical_or.accumulate(comp[..., ::-1], axis=-1)[..., ::-1]
    filled = left & right
    w = np.where(filled & ~comp, 1.0, prob) * _dilate(filled, 1)
    xs = np.arange(W, dtype=np.float32) + 0.5
    ys = np.arange(H, dtype=np.float32) + 0.5
    t = np.arange(T)
    mass = w.sum((-1, -2))
    valid = (mass > min_mass) & core.any((-1, -2))
    with np.errstate(all="ignore"):
        # The blob's rim can pick up a few stray pixels (mixed colours at the hairline or the collar), so each
        # dimension is measured where the head is clean: the height along the centre column (hairline to chin),
        # the width along the rows just below the head centre (between the eyes and the mouth).
        cm = core.sum((-1, -2))
        cx = (core.sum(-2) * xs).sum(-1) / np.maximum(cm, 1)
        for _ in range(2):
            xc = np.clip(np.round(np.nan_to_num(cx) - 0.5).astype(np.int64), 1, W - 2)
            col = (w[t, :, xc - 1] + w[t, :, xc] + w[t, :, xc + 1]) / 3  # [T, H]
            h = col.sum(-1)
            yc = (col * ys).sum(-1) / np.maximum(h, 1e-6)
            U = h / (1 + HAIRLINE)
            cy = yc + h / 2 - U
            # rows within 0.08 U of v = 0.1 (below the eyes, above a wide mouth), weighted by a triangle
            yr = cy + _WIDTH_V * U
            rw = np.clip(1 - np.abs(ys[None] - yr[:, None]) / np.maximum(0.08 * U[:, None], 0.75), 0, None)
            rows = (w * rw[:, :, None]).sum(-2) / np.maximum(rw.sum(-1, keepdims=True), 1e-6)  # [T, W]
            width = rows.sum(-1)
            cx = np.where(width > 0, (rows * xs).sum(-1) / np.maximum(width, 1e-6), cx)
    valid &= h > 3
    nan = np.float32(np.nan)
    skin = _dominant_colour(img[core])
    return FaceTrack(
        cx=np.where(valid, cx, nan).astype(np.float32),
        cy=np.where(valid, cy, nan).astype(np.float32),
        U=np.where(valid, U, nan).astype(np.float32),
        ax=np.where(valid, width / 2, nan).astype(np.float32),
        valid=valid,
        mask=filled & valid[:, None, None],
        skin=skin.astype(np.float32),
    )


def _template(X, Y, cx, cy, U, ax, zone_u=None):
    """Soft face template on pixel grids X [T, 1, S], Y [T, S, 1] for per-frame parameters [T, 1, 1]:
    (coverage of the head ellipse below the hairline, weight: 0 over the eye band and the mouth, 1 elsewhere).
    The ignored zones are sized by `zone_u` (default U): a fit keeps it fixed, or shrinking the head would be
    rewarded with a larger counted area."""
    zu = U if zone_u is None else zone_u
    cov = np.clip(0.5 - render._sd_ellipse(X, Y, cx, cy, ax, U), 0, 1) * np.clip(0.5 + Y - (cy - HAIRLINE * U), 0, 1)
    u, v = (X - cx) / zu, (Y - cy) / zu
    eyes = np.abs(v - render.EYE_V) < 0.16
    mouth = (np.abs(u) < 0.5) & (np.abs(v - MOUTH_V) < 0.42)
    return cov, ~(eyes | mouth)


def _fit(prob: np.ndarray, f: FaceTrack) -> FaceTrack:
    """Refine each frame's (cx, cy, U, ax) by fitting the face template to the face-tone mask prob [T, H, W]:
    maximise sum over the template of (prob - 1/2), i.e. cover skin and nothing else, ignoring the eyes and the
    mouth. The blob measurements of `_measure` start it; the fit is what makes the geometry robust to blur, which
    smears hair or collar outlines into skin-like rims that a blob would swallow."""
    T, H, W = prob.shape
    v = f.valid
    if not v.any():
        return f
    S = int(np.ceil(6.0 * np.nanmax(f.U[v]))) | 1
    P = np.pad(prob, ((0, 0), (S, S), (S, S)), constant_values=0.5)  # outside the frame: no evidence either way
    cx, cy = np.where(v, f.cx, W / 2), np.where(v, f.cy, H / 2)
    U, ax = np.where(v, f.U, 1.0), np.where(v, f.ax, 1.0)
    ox = np.round(cx).astype(np.int64) - S // 2
    oy = np.round(cy + 0.2 * U).astype(np.int64) - S // 2
    idx = np.arange(S)
    t = np.arange(T)[:, None, None]
    crops = P[t, (oy[:, None, None] + idx[None, :, None] + S), (ox[:, None, None] + idx[None, None, :] + S)] - 0.5
    X = (ox[:, None, None] + idx[None, None, :] + 0.5).astype(np.float32)
    Y = (oy[:, None, None] + idx[None, :, None] + 0.5).astype(np.float32)
    params = np.stack([cx, cy, U, ax], 1).astype(np.float32)  # [T, 4]

    def score(p, zone_u):
        c = [p[:, i, None, None] for i in range(4)]
        cov, care = _template(X, Y, *c, zone_u)
        return (cov * care * crops).sum((-1, -2))

    # Two rounds of coordinate search; the ignored zones are resized between them, so a head that starts too
    # small (only part of a blurred face found) can grow and take its eyes and mouth along.
    for steps in ((0.2, 0.1, 0.05), (0.1, 0.05, 0.025, 0.0125)):
        zone_u = params[:, 2, None, None].copy()
        best = score(params, zone_u)
        for step in steps:
            for _ in range(6 if step == 0.2 else 3):  # the coarsest step may have to grow a head by half
                moved = False
                for i in range(4):
                    for sign in (-1.0, 1.0):
                        trial = params.copy()
                        trial[:, i] += sign * step * params[:, 2]
                        trial[:, 2:] = np.maximum(trial[:, 2:], 1.0)
                        s = score(trial, zone_u)
                        better = (s > best + 1e-4) & v
                        if better.any():
                            params[better], best[better] = trial[better], s[better]
                            moved = True
                if not moved:
                    break
    cx, cy, U, ax = (params[:, i] for i in range(4))
    Xf = (np.arange(W, dtype=np.float32) + 0.5)[None, None, :]
    Yf = (np.arange(H, dtype=np.float32) + 0.5)[None, :, None]
    cov, _ = _template(Xf, Yf, cx[:, None, None], cy[:, None, None], U[:, None, None], ax[:, None, None])
    nan = np.float32(np.nan)
    return FaceTrack(
        cx=np.where(v, cx, nan),
        cy=np.where(v, cy, nan),
        U=np.where(v, U, nan),
        ax=np.where(v, ax, nan),
        valid=v,
        mask=(cov >= 0.5) & v[:, None, None],
        skin=f.skin,
    )


def faces_left_to_right(frames: np.ndarray, count: int, scale: float = 1.0) -> list[FaceTrack]:
    """The faces of `count` characters standing side by side in frames [T, H, W, 3]: one FaceTrack per character,
    index k = the k-th character from the image left, invalid (NaN geometry) in frames where its face is not found.
    `scale`: the expected head size relative to a lone character's (`find_faces`).

    Two passes. First, each character's usual column: `find_faces(max_faces=count)` finds the faces of every
    frame, which are sorted by position; in frames where all `count` are found the k-th from the left is
    character k, elsewhere the faces found go, keeping their order, to the characters whose columns they are
    nearest (the order-keeping choice with the least total distance; the columns start evenly spaced and are
    re-estimated as the median of what each character got). Second, each character's face is found again on its
    own, in a vertical band between the midpoints to its neighbours' columns (the rest of the frame blacked out,
    which is far from every skin tone). The second pass is what makes faces of different skin tones come out
    right: `find_faces` takes one skin tone per rank over the whole clip, and its rank-i face is a different
    character from frame to frame, so a light face among dark ones fails its tone test and is lost.
    """
    img = _as_float(frames)
    T, W = img.shape[0], img.shape[2]
    if count < 1:
        return []
    faces = find_faces(img, max_faces=count, scale=scale)
    cx = np.stack([f.cx for f in faces]) if faces else np.zeros((0, T), np.float32)  # [F, T]
    ok = np.stack([f.valid for f in faces]) if faces else np.zeros((0, T), bool)
    columns = (np.arange(count) + 0.5) * W / count
    everyone = ok.sum(0) == count
    if everyone.any():
        columns = np.median(np.sort(cx[:, everyone], axis=0), axis=1)
    placed = np.full((count, T), np.nan)
    for t in range(T):
        found = sorted(float(x) for x in cx[ok[:, t], t])
        if not found:
            continue
        slots = min(
            itertools.combinations(range(count), len(found)),
            key=lambda ks: sum(abs(x - columns[k]) for x, k in zip(found, ks)),
        )
        placed[list(slots), t] = found
    seen = np.isfinite(placed).any(1)
    columns = np.where(seen, np.nanmedian(np.where(seen[:, None], placed, 0.0), axis=1), columns)
    edges = [0.0, *((columns[1:] + columns[:-1]) / 2).tolist(), float(W)]
    xs = np.arange(W) + 0.5
    out = []
    for k in range(count):
        band = (xs >= edges[k]) & (xs < edges[k + 1])
        own = find_faces(np.where(band[None, None, :, None], img, 0.0), max_faces=1, scale=scale)
        if own:
            out.append(own[0])
        else:
            nan = np.full(T, np.nan, np.float32)
            out.append(FaceTrack(nan, nan, nan, nan, np.zeros(T, bool), np.zeros(img.shape[:3], bool), nan[:3]))
    return out


def face_mask(frames: np.ndarray) -> np.ndarray:
    """Predicted face mask [T, H, W] bool: the union of the faces found (up to 3)."""
    img = _as_float(frames)
    faces = find_faces(img, max_faces=3)
    out = np.zeros(img.shape[:3], bool)
    for f in faces:
        out |= f.mask
    return out


# ---------------------------------------------------------------------------------------------------------------
# Identity attributes (per frame features, then class probabilities)


def _identity_features(img: np.ndarray, f: FaceTrack) -> dict[str, np.ndarray]:
    """Per-frame raw features of a face: colours [T, 3] and geometry scalars [T] / vectors [T, 3]."""
    v = f.valid
    cx, cy, U = np.where(v, f.cx, 0), np.where(v, f.cy, 0), np.where(v, f.U, 1)
    axu = np.where(v, f.ax / f.U, 0.85)  # half-width in U
    # hair colour: the cap, above the hairline
    vals, ok = sample_grid(img, cx, cy, U, _grid(-0.35, 0.35, 0.1), _grid(-0.98, -0.7, 0.06))
    hair = _masked_median(vals, ok)
    # shirt: below the chin, in the middle of the torso
    vals, ok = sample_grid(img, cx, cy, U, _grid(-0.5, 0.5, 0.1), _grid(1.3, 1.8, 0.1))
    shirt = _masked_median(vals, ok)
    # hair style: fraction of hair-coloured samples beside the cheeks (long), at the temples (pigtails), on top (bun)
    feats = []
    for us_lo, us_hi, vs in ((0.03, 0.3, (0.2, 0.9)), (0.15, 0.57, (-0.65, -0.25))):
        fr = []
        for side in (-1, 1):
            us = side * _grid(us_lo, us_hi, 0.07)
            # offsets depend on the face width: shift the grid by the half-width per frame
            vals, ok = sample_grid(img, cx + side * axu * U, cy, U, us, _grid(*vs, 0.1))
            fr.append(_colour_fraction(vals, ok, hair))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # both sides off-frame -> NaN
            feats.append(np.nanmean(np.stack(fr), 0))
    vals, ok = sample_grid(img, cx, cy, U, _grid(-0.22, 0.22, 0.07), _grid(-1.58, -1.32, 0.06))
    feats.append(_colour_fraction(vals, ok, hair))
    style = np.stack(feats, -1)
    # sunglasses: how far the eye band has moved from skin towards the lens colour
    vals, ok = sample_grid(img, cx, cy, U, _grid(-0.55, 0.55, 0.06), _grid(-0.3, -0.06, 0.06))
    glasses = _towards(vals, ok, f.skin, world.GLASSES_COLOUR)
    return {"hair": hair, "shirt": shirt, "style": style, "glasses": glasses, "ratio": axu}


def _colour_fraction(vals: np.ndarray, ok: np.ndarray, colour: np.ndarray, lo: float = 35.0, hi: float = 65.0):
    """Per-frame fraction [T] of valid samples within colour distance ~lo..hi of `colour` [T, 3]."""
    d = np.sqrt(((vals - colour[:, None, None, :]) ** 2).sum(-1))
    m = np.clip((hi - d) / (hi - lo), 0, 1)
    n = ok.sum((-1, -2))
    # a region entirely outside the frame is unknown (NaN), not "no hair"
    return np.where(n > 0, (m * ok).sum((-1, -2)) / np.maximum(n, 1), np.nan)


def _towards(vals: np.ndarray, ok: np.ndarray, base: np.ndarray, target) -> np.ndarray:
    """Per-frame mean [T] of the projection of (colour - base) onto (target - base), clipped to 0..1."""
    d = np.asarray(target, np.float32) - base
    t = np.clip(((vals - base) @ d) / max(float(d @ d), 1e-6), 0, 1)
    n = ok.sum((-1, -2))
    return np.where(n > 0, (t * ok).sum((-1, -2)) / np.maximum(n, 1), np.nan)


#: Class prototypes of the geometric identity features (face half-width / half-height; hair-coloured fractions
#: beside the cheeks, at the temples, on top; how far the eye band is towards the lens colour), as measured by
#: `calibrate_prototypes(300)` on clean reference images. tests/test_proving_ground_metrics.py re-measures them, so
#: a change to the renderer that moves them fails a test instead of silently biasing the readers.
PROTOTYPES: dict[str, np.ndarray] = {
    "ratio": np.array([0.6819, 0.859, 1.0523], np.float32),
    "style": np.array(
        [[0.0029, 0.0015, 0.0], [0.9254, 0.2055, 0.0022], [0.0078, 0.0019, 0.9492], [0.0064, 0.9615, 0.0025]],
        np.float32,
    ),
    "glasses": np.array([0.0566, 0.6203], np.float32),
}


def calibrate_prototypes(n: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """Measure PROTOTYPES: the mean feature per class over `n` random reference images (64 x 64, clean)."""
    rng = np.random.default_rng(seed)
    sums: dict[str, dict[str, list]] = {"ratio": {}, "style": {}, "glasses": {}}
    for _ in range(n):
        ident = world.sample_identity(rng, heldout=bool(rng.integers(2)))
        img, _, _ = render.render_reference(ident, rng)
        x = _as_float(img)
        faces = find_faces(x)
        if not faces or not faces[0].valid[0]:
            continue
        f = _identity_features(x, faces[0])
        sums["ratio"].setdefault(ident.face_shape, []).append(f["ratio"][0])
        sums["style"].setdefault(ident.hair_style, []).append(f["style"][0])
        sums["glasses"].setdefault(ident.glasses, []).append(f["glasses"][0])
    order = {"ratio": world.FACE_SHAPES, "style": world.HAIR_STYLES, "glasses": world.GLASSES}
    return {k: np.array([np.nanmean(sums[k][c], 0) for c in order[k]], np.float32) for k in sums}


def _prototypes() -> dict[str, np.ndarray]:
    return PROTOTYPES


def read_identity(frames: np.ndarray, face: FaceTrack | None = None, max_frames: int = 12) -> dict | None:
    """Identity attributes of the (largest) face in frames [T, H, W, 3] or an image [H, W, 3].

    Each feature is the median over up to `max_frames` evenly spaced frames (so a few frames where the face is
    mislocated do not count), then compared with the palettes / prototypes. Returns {attribute: {value:
    probability}}, or None when no face is found. An attribute never measurable (e.g. the hair cap off-frame in
    every frame) gets a uniform distribution.
    """
    img = _as_float(frames)
    if face is None:
        idx = np.unique(np.linspace(0, img.shape[0] - 1, min(max_frames, img.shape[0])).round().astype(int))
        img = img[idx]
        faces = find_faces(img)
        if not faces:
            return None
        face = faces[0]
    v = face.valid
    if not v.any():
        return None
    feats = _identity_features(img, face)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features stay NaN
        med = {k: np.nanmedian(x[v], axis=0)[None] for k, x in feats.items()}
    proto = _prototypes()
    probs = {
        "skin": _palette_probs(face.skin[None], world.SKIN_TONES),
        "hair_colour": _palette_probs(med["hair"], world.HAIR_COLOURS),
        "hair_style": _softmax_dist(np.nansum((med["style"][:, None, :] - proto["style"][None]) ** 2, -1), 0.2),
        "shirt": _palette_probs(med["shirt"], world.SHIRT_COLOURS),
        "face_shape": _softmax_dist((med["ratio"][:, None] - proto["ratio"][None]) ** 2, 0.04),
        "glasses": _softmax_dist((med["glasses"][:, None] - proto["glasses"][None]) ** 2, 0.15),
    }
    out = {}
    for name, p in probs.items():
        m = p[0]
        if not np.isfinite(m).all():
            m = np.full(len(world.ATTRIBUTES[name]), 1.0 / len(world.ATTRIBUTES[name]))
        out[name] = dict(zip(world.ATTRIBUTES[name], (float(x) for x in m)))
    return out


def argmax_labels(probs: dict[str, dict[str, float]]) -> dict[str, str]:
    """{attribute: {value: p}} -> {attribute: most likely value}."""
    return {k: max(v, key=v.get) for k, v in probs.items()}


# ---------------------------------------------------------------------------------------------------------------
# Text factors: scene, object, action


def _corner_boxes(H: int, W: int) -> list[tuple[slice, slice]]:
    """(rows, cols) of the four background corners that the character does not reach."""
    th, tw, bh, bw = int(round(0.16 * H)), int(round(0.16 * W)), int(round(0.14 * H)), int(round(0.1 * W))
    return [
        (slice(0, th), slice(0, tw)),
        (slice(0, th), slice(W - tw, W)),
        (slice(H - bh, H), slice(0, bw)),
        (slice(H - bh, H), slice(W - bw, W)),
    ]


def read_scene(frames: np.ndarray) -> dict[str, float]:
    """Scene probabilities {scene: p} from the median colours of the four frame corners (median over frames
    and pixels, so stars, windows and a passing hand do not count); the worst-matching corner is ignored."""
    img = _as_float(frames)
    T, H, W = img.shape[:3]
    corners = []
    for rows, cols in _corner_boxes(H, W):
        corners.append(np.median(img[:, rows, cols].reshape(-1, 3), 0))
    c = np.stack(corners)  # [4, 3]
    d2 = []
    for s in world.SCENES.values():
        protos = []
        for rows, _ in _corner_boxes(H, W):
            centre = (rows.start + rows.stop) / 2 / H
            protos.append(s["top"] if centre < s["horizon"] else s["bottom"])
        d = np.sqrt(((c - np.asarray(protos, np.float32)) ** 2).sum(-1))
        d = np.sort(d)[:3]  # drop the worst corner: it may be occluded
        d2.append(float((d**2).mean()))
    p = _softmax_dist(np.asarray(d2)[None], 30.0)[0]
    return dict(zip(world.SCENES, (float(x) for x in p)))


def _object_evidence(img: np.ndarray, f: FaceTrack) -> np.ndarray:
    """Per frame and object [T, K] the area (in U^2) of the object's colour beside the head on the image right,
    beyond where pigtails can reach."""
    v = f.valid
    cx, cy, U = np.where(v, f.cx, 0), np.where(v, f.cy, 0), np.where(v, f.U, 1)
    axu = np.where(v, f.ax / f.U, 0.85)
    step = 0.08
    us, vs = _grid(0.75, 2.0, step), _grid(-1.05, 0.5, step)
    vals, ok = sample_grid(img, cx + axu * U, cy, U, us, vs)
    out = []
    for col in world.OBJECTS.values():
        if col is None:
            continue
        d = np.sqrt(((vals - np.asarray(col, np.float32)) ** 2).sum(-1))
        m = np.clip((65 - d) / 30, 0, 1) * ok
        out.append(m.sum((-1, -2)) * step * step)
    return np.stack(out, -1)


OBJECT_THRESHOLD = 0.12  # U^2 of object colour; a ball is ~0.79, a flower's petals ~0.66


def read_object(frames: np.ndarray, face: FaceTrack | None = None) -> tuple[str, dict]:
    """The held object ("none" if nothing is held) and the evidence per object (mean area in U^2)."""
    img = _as_float(frames)
    if face is None:
        faces = find_faces(img)
        if not faces:
            return "none", {}
        face = faces[0]
    ev = _object_evidence(img, face)[face.valid]
    if not len(ev):
        return "none", {}
    mean = ev.mean(0)
    names = [k for k, c in world.OBJECTS.items() if c is not None]
    evidence = dict(zip(names, (float(x) for x in mean)))
    best = int(mean.argmax())
    return (names[best] if mean[best] >= OBJECT_THRESHOLD else "none"), evidence


def _shirt_colour(img: np.ndarray, face: FaceTrack) -> np.ndarray:
    """The shirt's colour [3]: the median over the face's valid frames of the colour below the chin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no valid frame -> NaN
        return np.nanmedian(_identity_features(img, face)["shirt"][face.valid], 0)


def _spread(x: np.ndarray) -> float:
    """A standard deviation that a few mislocated frames cannot inflate: (90th - 10th percentile) / 2.56."""
    return float(np.subtract(*np.percentile(x, [90, 10])) / 2.56) if len(x) > 1 else 0.0


HAND_THRESHOLD = 0.12  # U^2 of skin where a raised waving hand is
JUMP_RATIO = 0.4  # jumping moves the shoulders as much as the head (~1), nodding does not (~0.1)
MOTION_THRESHOLD = 0.08  # spread of the head position in U below which the head is still (nodding: ~0.21)


def read_action(frames: np.ndarray, face: FaceTrack | None = None, shirt: np.ndarray | None = None) -> tuple[str, dict]:
    """The action in frames [T, H, W, 3] and the motion features it was decided from.

    Features: `hand` median over frames of the skin area (U^2, in the face's tone) where a waving hand is (left
    of the head); `sx`, `sy` spread (robust standard deviation) of the head centre in U; `shoulder` spread of
    the shoulder line in U (the torso moves when jumping, not when nodding). Rules: hand -> waving; no head
    motion -> still; sideways -> shaking; vertical with the shoulders -> jumping, else nodding.
    """
    img = _as_float(frames)
    if face is None:
        faces = find_faces(img)
        if not faces:
            return "still", {}
        face = faces[0]
    v = face.valid
    if v.sum() < 2:
        return "still", {}
    U = face.scale
    cx, cy = face.cx[v], face.cy[v]
    sx, sy = _spread(cx) / U, _spread(cy) / U
    # waving hand: the face's own skin tone to the left of the head at eye level
    vals, ok = sample_grid(img[v], cx, cy, U, _grid(-2.9, -1.45, 0.08), _grid(-0.95, 0.1, 0.08))
    tone = _tone_probability(vals, face.skin, (30.0, 55.0))  # a small hand blurs more than a face: be lenient
    hand = float(np.median((tone * ok).sum((-1, -2)) * 0.08 * 0.08))
    # shoulder line: shirt-coloured mass in fixed columns beside the neck (fixed in the frame, not the head)
    if shirt is None:
        shirt = _shirt_colour(img, face)
    mx, my = float(np.median(cx)), float(np.median(cy))
    sh = []
    for side in (-1, 1):
        vals, ok = sample_grid(img[v], mx, my, U, side * _grid(1.42, 1.56, 0.07), _grid(0.5, 2.0, 0.08))
        d = np.sqrt(((vals - shirt) ** 2).sum(-1))
        m = np.clip((65 - d) / 30, 0, 1) * ok
        sh.append(m.mean(-1).sum(-1) * 0.08)  # shirt height in the window (U) per frame
    shoulder = _spread(np.mean(sh, 0))
    feats = {"hand": hand, "sx": sx, "sy": sy, "shoulder": shoulder}
    if hand > HAND_THRESHOLD:
        return "waving", feats
    if max(sx, sy) < MOTION_THRESHOLD:
        return "still", feats
    if sx > sy:
        return "shaking", feats
    return ("jumping" if shoulder > JUMP_RATIO * sy else "nodding"), feats


# ---------------------------------------------------------------------------------------------------------------
# Mouth and audio


def _mixing(vals: np.ndarray, base: np.ndarray, target, tol: float = 40.0) -> np.ndarray:
    """How much of `target` is mixed into `base` at each pixel [..., 3] -> [...] in 0..1: the position along the
    line from base to target, damped by the distance from that line (so other dark colours, such as sunglasses
    leaking in, do not count as mouth)."""
    d = np.asarray(target, np.float32) - base
    t = ((vals - base) @ d) / max(float(d @ d), 1e-6)
    perp = np.sqrt(np.maximum(((vals - base) ** 2).sum(-1) - t * t * float(d @ d), 0))
    return np.clip(t, 0, 1) * np.clip(1 - perp / tol, 0, 1)


def _area_to_opening(area: np.ndarray) -> np.ndarray:
    """Invert the renderer's mouth area pi (RX0 + RX1 o)(RY0 + RY1 o) (in U^2) to the opening o."""
    (x0, x1), (y0, y1) = render.MOUTH_RX, render.MOUTH_RY
    a = np.maximum(area / np.pi, 0.0)
    qa, qb, qc = x1 * y1, x0 * y1 + x1 * y0, x0 * y0 - a
    return (-qb + np.sqrt(np.maximum(qb * qb - 4 * qa * qc, 0))) / (2 * qa)


def mouth_opening(frames: np.ndarray, face: FaceTrack | None = None) -> np.ndarray:
    """Mouth opening per frame [T] (0 closed .. 1 fully open; NaN where no face) from the area of mouth-coloured
    pixels below the nose, measured as how far each pixel has moved from skin towards the mouth colour."""
    img = _as_float(frames)
    if face is None:
        faces = find_faces(img)
        if not faces:
            return np.full(img.shape[0], np.nan, np.float32)
        face = faces[0]
    m, _ = _mouth_mix(img, face)
    area = m.sum((-1, -2)) * _MOUTH_STEP * _MOUTH_STEP
    return np.where(face.valid, _area_to_opening(area), np.nan).astype(np.float32)


_MOUTH_STEP = 0.05


def _mouth_mix(img: np.ndarray, face: FaceTrack) -> tuple[np.ndarray, np.ndarray]:
    """How much mouth colour each sample holds in a box around the mouth, on a grid of `_MOUTH_STEP` U:
    (mix [T, nv, nu] in 0..1, zero outside the frame; the grid's u offsets [nu] from the head centre in U)."""
    v = face.valid
    us = _grid(-0.7, 0.7, _MOUTH_STEP)
    vals, ok = sample_grid(
        img,
        np.where(v, face.cx, 0),
        np.where(v, face.cy, 0),
        np.where(v, face.U, 1),
        us,
        _grid(MOUTH_V - 0.39, MOUTH_V + 0.48, _MOUTH_STEP),
    )
    return _mixing(vals, face.skin, world.MOUTH_COLOUR) * ok, us


def audio_rms(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS of mono audio [N] (a few channels are averaged) over each video frame's 1/fps window: [num_frames]
    float64, in the audio's own units. Audio shorter than the video is padded with silence."""
    x = np.asarray(wave, np.float32)
    if x.ndim > 1:
        x = x.mean(-1) if x.shape[-1] <= 8 else x.mean(0)
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    if len(x) < edges[-1]:
        x = np.pad(x, (0, edges[-1] - len(x)))
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    return np.sqrt((c[edges[1:]] - c[edges[:-1]]) / np.maximum(np.diff(edges), 1))


def audio_envelope(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Loudness envelope per video frame [num_frames] from mono audio [N]: RMS over each frame's 1/fps window
    (`audio_rms`), scaled so the 98th percentile of the voiced frames is 1 (silence -> ~0). Audio shorter than
    the video is padded with silence."""
    rms = audio_rms(wave, sample_rate, fps, num_frames)
    top = np.percentile(rms, 98) if len(rms) else 0.0
    return (rms / top).astype(np.float32) if top > 1e-5 else np.zeros(num_frames, np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Pose

TORSO_SEARCH = 0.6  # U: how far the body anchor may lie from the head centre (nodding and shaking move it 0.3)
_FIT_STEP = 0.025  # U between the torso fit's candidate anchors
TORSO_PULL = 10.0  # pull of the torso fit towards the head (score per U^2 of offset); see _fit_torso
_HAND_STEP = 0.05  # U between the hand fit's samples and candidate centres
HAND_REACH = (0.45, 0.3)  # U (u, v) around the renderer's place of a raised hand searched (waving moves 0.25 in u)
HAND_RING = 0.2  # U: the ring around the hand disc that should hold no skin
HAND_FOUND = 0.5  # mean face-tone probability over the best hand disc's seen part from which a hand is raised


def _peak(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame maximum of score [T, A, B]: (row, column) [T] as fractional indices, refined between grid
    points by a parabola along each axis, and the maximum [T]."""
    T, A, B = score.shape
    t = np.arange(T)
    a, b = np.divmod(score.reshape(T, -1).argmax(1), B)

    def refine(i, n, at):
        s0, sm, sp = at(i), at(np.maximum(i - 1, 0)), at(np.minimum(i + 1, n - 1))
        den = sm - 2 * s0 + sp
        inner = (i > 0) & (i < n - 1) & (den < 0)
        return i + np.where(inner, np.clip(0.5 * (sm - sp) / np.where(inner, den, -1.0), -0.5, 0.5), 0.0)

    return refine(a, A, lambda i: score[t, i, b]), refine(b, B, lambda i: score[t, a, i]), score[t, a, b]


def _fit_torso(img, cx, cy, U: float, axu: float, skin, shirt) -> tuple[np.ndarray, np.ndarray]:
    """The body anchor (bx, by) [T] in pixels: the renderer's torso box (its size fixed in U) placed where it
    covers the most shirt colour and the least else, among anchors within TORSO_SEARCH U of the head (cx, cy) [T].

    The head, raised arms (skin of the face's tone) and the place of long hair panels (which may share the shirt's
    colour) cover the torso's top: they count as no evidence either way. A first search scores the box without
    its rounded corners, which is separable in u and v (two matrix products for all candidate anchors); the
    exact box then refines it nearby (square corners on background pull the box down by up to 0.1 U where the
    head and hair leave little of the straight top edge in view). Where the shirt cannot be told from the
    background (a teal shirt on the sea) a pull towards the head decides; it is weaker than any visible edge."""
    us, vs = _grid(-2.6, 2.6, 0.1), _grid(0.1, 2.6, 0.1)
    vals, ok = sample_grid(img, cx, cy, U, us, vs)
    shirt_p = np.clip((65 - np.sqrt(((vals - shirt) ** 2).sum(-1))) / 30, 0, 1)
    panels = (np.abs(np.abs(us) - axu - 0.1)[None, :] < 0.35) & (vs[:, None] < 1.2)
    # rows whose background has the shirt's colour (a teal shirt on the sea, green on grass) hide the torso's
    # sides: they tell nothing either way (the background of a row: the frame's outer columns, median over time)
    H = img.shape[1]
    edge = np.concatenate([img[:, :, :3], img[:, :, -3:]], 2)  # [T, H, 6, 3]
    bg = np.median(edge.transpose(1, 0, 2, 3).reshape(H, -1, 3), 1)  # [H, 3]
    row = np.clip(np.floor(cy[:, None] + vs[None, :] * U), 0, H - 1).astype(np.int64)  # [T, nv]
    apart = np.clip((np.sqrt(((bg[row] - shirt) ** 2).sum(-1)) - 35) / 30, 0, 1)  # [T, nv]
    w = ok * apart[:, :, None] * (1 - _tone_probability(vals, skin)) * ~panels * (shirt_p - 0.5)  # [T, nv, nu]
    d = np.arange(-TORSO_SEARCH, TORSO_SEARCH + 1e-6, 2 * _FIT_STEP, dtype=np.float32)
    (hw, hh), top = render.TORSO_HALF, render.TORSO_TOP
    cov_u = np.clip(0.5 - (np.abs(us[None] - d[:, None]) - hw) * U, 0, 1)  # [D, nu]: columns inside the box
    cov_v = np.clip(0.5 - (np.abs(vs[None] - d[:, None] - top - hh) - hh) * U, 0, 1)  # [D, nv]: rows inside it
    score = cov_v @ (w @ cov_u.T) - TORSO_PULL * (d[:, None] ** 2 + d[None, :] ** 2)  # [T, D (v), D (u)]
    a, b, _ = _peak(score)
    near = np.arange(-4, 5, dtype=np.float32) * _FIT_STEP  # +-0.1 U around the first fit
    du = (b * 2 * _FIT_STEP - TORSO_SEARCH)[:, None, None] + near[None, None, :]  # [T, 1, 9]
    dv = (a * 2 * _FIT_STEP - TORSO_SEARCH)[:, None, None] + near[None, :, None]  # [T, 9, 1]
    sd = render._sd_box(us, vs[:, None], du[..., None, None], (dv + top + hh)[..., None, None], hw, hh, render.TORSO_R)
    score = (np.clip(0.5 - sd * U, 0, 1) * w[:, None, None]).sum((-1, -2)) - TORSO_PULL * (du**2 + dv**2)  # [T, 9, 9]
    a, b, _ = _peak(score)
    t = np.arange(len(w))
    du = du[t, 0, np.round(b).astype(np.int64)] + (b - np.round(b)) * _FIT_STEP
    dv = dv[t, np.round(a).astype(np.int64), 0] + (a - np.round(a)) * _FIT_STEP
    return cx + du * U, cy + dv * U


def _fit_hand(img, bx, by, U: float, skin, place) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A raised hand near `place` (u, v in U from the body anchor (bx, by) [T]): the centre of the disc of the
    hand's radius that holds skin of the face's tone inside and little in a ring around it, within HAND_REACH
    (u, v) of that place. Returns x, y [T] in pixels and found [T] bool (at least half the disc is seen, and what
    is seen is mostly skin: a hand is there).

    The score is sum (p - 1/2) over the disc minus sum p over the ring (HAND_RING U wide): a disc alone would
    slide down the arm, which adds skin behind it while the hand's top, under a held object, gives nothing to
    lose; skin in the ring (the arm on both sides of a disc placed on it, the hand beyond a disc that slid off it)
    stops that. The reach is small enough that the window does not hold the arm's far half, where at 64 x 64 a
    disc on the arm (0.4 U wide, blurred) can score as high as a hand split by a flower's stem. Samples outside
    the frame, and those of an object's colour, count neither way."""
    s, r, ring = _HAND_STEP, render.HAND_R, HAND_RING
    k = int(np.ceil((r + ring) / s + 0.5 / (s * U)))  # kernel offsets, anti-aliased rim included
    nu, nv = (int(round(2 * reach / s)) + 1 for reach in HAND_REACH)
    offs = [((np.arange(m + 2 * k) - k) * s - reach).astype(np.float32) for m, reach in zip((nu, nv), HAND_REACH)]
    vals, ok = sample_grid(img, bx, by, U, place[0] + offs[0], place[1] + offs[1])
    objects = np.asarray([c for c in world.OBJECTS.values() if c is not None], np.float32)
    near = np.sqrt(((vals[..., None, :] - objects) ** 2).sum(-1)).min(-1)
    # grown by a pixel: the object's anti-aliased rim over the hand is neither skin nor object
    care = ok * (1 - _dilate(np.clip((65 - near) / 30, 0, 1), int(np.ceil(1 / (s * U)))))
    p = care * _tone_probability(vals, skin, (30.0, 55.0))  # a small hand blurs more than a face: be lenient
    w = p - 0.5 * care
    skin_in, seen_in = np.zeros((2, len(w), nv, nu), np.float32)  # disc-weighted sums of p and of care
    score = np.zeros_like(skin_in)
    area = 0.0
    for i in range(-k, k + 1):
        for j in range(-k, k + 1):
            d = s * np.hypot(i, j)
            c = float(np.clip(0.5 + (r - d) * U, 0, 1))  # coverage of the disc, in pixels
            c_ring = float(np.clip(0.5 + (r + ring - d) * U, 0, 1)) - c
            if c > 0 or c_ring > 0:
                rows, cols = slice(k + i, k + i + nv), slice(k + j, k + j + nu)
                skin_in += c * p[:, rows, cols]
                seen_in += c * care[:, rows, cols]
                score += c * w[:, rows, cols] - c_ring * p[:, rows, cols]
                area += c
    a, b, _ = _peak(score)
    t, ia, ib = np.arange(len(w)), np.round(a).astype(np.int64), np.round(b).astype(np.int64)
    x = bx + (place[0] - HAND_REACH[0] + b * s) * U
    y = by + (place[1] - HAND_REACH[1] + a * s) * U
    seen = seen_in[t, ia, ib]
    return x, y, (seen >= 0.5 * area) & (skin_in[t, ia, ib] >= HAND_FOUND * np.maximum(seen, 1e-6))


def read_pose(frames: np.ndarray, face: FaceTrack | None = None, shirt: np.ndarray | None = None) -> np.ndarray:
    """Keypoints [T, K, 3] (x, y in pixels, visible 0/1) of the (largest) character in frames [T, H, W, 3], in
    `render.KEYPOINTS` order, each measured where `render.keypoints` puts it:

    - head, head_top, chin: the face's centre and half-height (`find_faces`); the eyes and the mouth at the
      renderer's offsets on that face, shifted sideways by the mouth's measured offset (the head turn);
    - neck and shoulders: at the renderer's offsets from the body anchor of the torso fit (`_fit_torso`);
    - hands: a raised hand (the waving hand on the image left, the object hand on the image right) where a disc of
      the hand's size covers the face's skin tone (`_fit_hand`); a hand not found is placed at the hip, where the
      renderer places a lowered one, and marked invisible (it is not drawn: nothing was seen there).

    Every keypoint has a place in every frame where the face is found; it is visible (1) where it was seen and
    lies inside the frame, the renderer's rule, else 0. Frames without a face give zeros. `shirt` [3]: the
    shirt's colour if known (else read below the chin).
    """
    img = _as_float(frames)
    T, H, W = img.shape[:3]
    out = np.zeros((T, len(render.KEYPOINTS), 3), np.float32)
    if face is None:
        faces = find_faces(img)
        if not faces:
            return out
        face = faces[0]
    v = face.valid
    if not v.any():
        return out
    U = face.scale
    axu = float(np.nanmedian(face.ax[v] / face.U[v]))
    if shirt is None:
        shirt = _shirt_colour(img, face)
    img, cx, cy, ax = img[v], face.cx[v], face.cy[v], face.ax[v]
    sub = FaceTrack(cx, cy, face.U[v], ax, np.ones(len(cx), bool), face.mask[v], face.skin)
    mix, us = _mouth_mix(img, sub)
    with np.errstate(all="ignore"):
        shift = np.nan_to_num((mix.sum(1) * us).sum(-1) / mix.sum((-1, -2))) * U  # a shut mouth: no turn
    bx, by = _fit_torso(img, cx, cy, U, axu, face.skin, shirt)
    hands, seen = [], np.ones((len(cx), len(render.KEYPOINTS)), bool)
    for place, side, name in ((render.WAVE_HAND, -1, "left_hand"), (render.OBJECT_HAND, 1, "right_hand")):
        x, y, found = _fit_hand(img, bx, by, U, face.skin, place)
        hands.append((np.where(found, x, bx + side * render.HIP[0] * U), np.where(found, y, by + render.HIP[1] * U)))
        seen[:, render.KEYPOINTS.index(name)] = found
    su, sv = render.SHOULDER
    pts = {
        "head": (cx, cy),
        "head_top": (cx, cy - render.HEAD_TOP * U),
        "chin": (cx, cy + U),
        "left_eye": (cx - 0.4 * ax + shift, cy + render.EYE_V * U),
        "right_eye": (cx + 0.4 * ax + shift, cy + render.EYE_V * U),
        "mouth": (cx + shift, cy + MOUTH_V * U),
        "neck": (bx, by + render.TORSO_TOP * U),
        "left_shoulder": (bx - su * U, by + sv * U),
        "right_shoulder": (bx + su * U, by + sv * U),
        "left_hand": hands[0],
        "right_hand": hands[1],
    }
    xy = np.stack([np.stack(pts[name], -1) for name in render.KEYPOINTS], 1)  # [Tv, K, 2]
    vis = seen & (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    out[v] = np.concatenate([xy, vis[..., None]], -1)
    return out
