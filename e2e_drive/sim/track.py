"""Procedural race tracks: closed, smooth, never self-intersecting loops drawn from a seed.

A track is a centre line sampled every ``SAMPLE_SPACING`` metres (a periodic
cubic spline through perturbed polar points), a road width that varies along
it, a visual ``Theme`` and a top-down ``texture`` of the whole world rendered
once (road, lane markings, edges, shadows, clutter), which the camera then
views through a homography.

World frame: x east, y north, z up, metres. Texture pixel centres sit at
integer coordinates: ``col = (x - x0) * ppm``, ``row = (y1 - y) * ppm``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

SAMPLE_SPACING = 0.5  # metres between centre-line samples
PIXELS_PER_METRE = 8.0  # texture resolution: 12.5 cm per pixel
MIN_RADIUS = 10.0  # tightest allowed bend (metres); the car turns down to ~5.4 m
INTERVENTION_FRACTION = 0.3  # NVIDIA's "1 m off centre" on a 3.6 m lane, scaled to our road width
_MARGIN = 25.0  # metres of ground around the track in the texture


@dataclass(frozen=True)
class Theme:
    """How a track looks: colours (RGB), markings, lighting, shadows and clutter."""

    name: str
    road: tuple[int, int, int]
    ground: tuple[int, int, int]
    edge_line: tuple[int, int, int] | None
    centre_line: tuple[int, int, int] | None
    sky_top: tuple[int, int, int]
    sky_horizon: tuple[int, int, int]
    bonnet: tuple[int, int, int]
    brightness: float
    road_noise: float
    ground_noise: float
    shadows: int
    clutter: int
    clutter_colours: tuple[tuple[int, int, int], ...]
    kerbs: bool = False


_ROADS = {"asphalt": (92, 92, 96), "dark asphalt": (62, 62, 68), "dirt": (150, 118, 84), "gravel": (128, 124, 112)}
_GROUNDS = {"grass": (70, 120, 50), "dry grass": (140, 140, 70), "sand": (200, 180, 130), "forest": (40, 80, 40)}
_SKIES = (((80, 130, 200), (190, 210, 230)), ((120, 120, 130), (200, 200, 205)), ((200, 120, 80), (240, 200, 150)))
_BONNETS = ((30, 30, 35), (150, 30, 30), (200, 200, 205), (40, 60, 140))


def make_theme(rng: np.random.Generator) -> Theme:
    """Draw a visual theme, so that no single colour tells a network where the road is."""
    road_name = str(rng.choice(list(_ROADS)))
    ground_name = str(rng.choice([g for g in _GROUNDS if not (road_name == "dirt" and g == "sand")]))
    sky_top, sky_horizon = _SKIES[int(rng.integers(len(_SKIES)))]
    paved = "asphalt" in road_name
    white, yellow = (235, 235, 235), (230, 200, 40)
    return Theme(
        name=f"{road_name} on {ground_name}",
        road=_ROADS[road_name],
        ground=_GROUNDS[ground_name],
        edge_line=white if paved or rng.random() < 0.3 else None,
        centre_line=(yellow if rng.random() < 0.5 else white) if paved and rng.random() < 0.8 else None,
        sky_top=sky_top,
        sky_horizon=sky_horizon,
        bonnet=_BONNETS[int(rng.integers(len(_BONNETS)))],
        brightness=float(rng.uniform(0.75, 1.15)),
        road_noise=float(rng.uniform(4, 14)),
        ground_noise=float(rng.uniform(8, 25)),
        shadows=int(rng.integers(0, 25)),
        clutter=int(rng.integers(40, 300)),
        clutter_colours=((30, 70, 30), (90, 90, 85), (110, 80, 50), (50, 100, 40)),
        kerbs=bool(paved and rng.random() < 0.6),
    )


@dataclass(frozen=True)
class Track:
    """A closed track: centre line, width, theme and its top-down world texture.

    Args:
        seed: the seed it was generated from.
        centre: ``(N, 2)`` centre-line points, ``SAMPLE_SPACING`` apart, counter-clockwise
            for generated tracks (``mirror()`` makes them clockwise).
        width: ``(N,)`` road width in metres at each point.
        theme: the visual theme.
        texture: ``(rows, cols, 3)`` uint8 RGB top-down image of the world.
        origin: ``(x0, y1)``: world coordinates of texture pixel (col 0, row 0).
        pixels_per_metre: texture resolution.
        spacing: metres between consecutive centre points (about ``SAMPLE_SPACING``;
            exact for the loop, closing segment included).
    """

    seed: int
    centre: np.ndarray
    width: np.ndarray
    theme: Theme
    texture: np.ndarray
    origin: tuple[float, float]
    pixels_per_metre: float = PIXELS_PER_METRE
    spacing: float = SAMPLE_SPACING

    @property
    def length(self) -> float:
        """Length of the loop in metres."""
        return float(len(self.centre) * self.spacing)

    @property
    def tangent(self) -> np.ndarray:
        """Unit tangents ``(N, 2)`` in driving direction."""
        return _tangents(self.centre)

    @property
    def normal(self) -> np.ndarray:
        """Unit normals ``(N, 2)`` pointing to the left of the driving direction."""
        t = self.tangent
        return np.stack([-t[:, 1], t[:, 0]], axis=1)

    @property
    def heading(self) -> np.ndarray:
        """Direction of travel (radians, counter-clockwise from east) at each point."""
        t = self.tangent
        return np.arctan2(t[:, 1], t[:, 0])

    @property
    def curvature(self) -> np.ndarray:
        """Signed curvature (1/m, positive = left bend) at each point."""
        return _curvature(self.centre)

    @property
    def intervention_offset(self) -> np.ndarray:
        """Off-centre distance (metres) at which a safety driver takes over, per point."""
        return INTERVENTION_FRACTION * self.width

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Left and right road edges, ``(N, 2)`` each."""
        half = (self.width / 2.0)[:, None]
        return self.centre + half * self.normal, self.centre - half * self.normal

    def world_to_texture(self) -> np.ndarray:
        """3x3 matrix mapping world ``(x, y, 1)`` to texture ``(col, row, 1)``."""
        x0, y1 = self.origin
        p = self.pixels_per_metre
        return np.array([[p, 0.0, -x0 * p], [0.0, -p, y1 * p], [0.0, 0.0, 1.0]])

    def locate(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project positions onto the centre line.

        Args:
            xy: ``(B, 2)`` world positions.

        Returns:
            ``(index, station, offset)``: nearest sample, arc length along the loop
            (metres, in [0, length)) and signed lateral offset (metres, positive = left).
        """
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        _, index = self._tree.query(xy)
        delta = xy - self.centre[index]
        along = np.einsum("ij,ij->i", delta, self.tangent[index])
        offset = np.einsum("ij,ij->i", delta, self.normal[index])
        station = np.mod(index * self.spacing + along, self.length)
        return index, station, offset

    def point_at(self, station: np.ndarray, offset: np.ndarray | float = 0.0) -> np.ndarray:
        """World positions ``(B, 2)`` at arc length ``station`` and lateral ``offset`` (left positive)."""
        station = np.mod(np.asarray(station, dtype=np.float64), self.length)
        position = station / self.spacing
        i0 = np.floor(position).astype(int) % len(self.centre)
        i1 = (i0 + 1) % len(self.centre)
        w = (position - np.floor(position))[..., None]
        point = (1 - w) * self.centre[i0] + w * self.centre[i1]
        return point + np.asarray(offset, dtype=np.float64)[..., None] * self.normal[i0]

    @property
    def _tree(self):
        tree = self.__dict__.get("_kdtree")
        if tree is None:
            from scipy.spatial import cKDTree  # SciPy takes most of a second to load: not for `e2e-drive --help`

            tree = cKDTree(self.centre)
            object.__setattr__(self, "_kdtree", tree)
        return tree

    def mirror(self) -> "Track":
        """The same track reflected about the vertical axis ``x = 0`` (texture flipped left-right).

        Driving the mirrored track from the mirrored pose shows the left-right
        flipped camera frame, and the steering that follows it changes sign.
        """
        x0, y1 = self.origin
        cols = self.texture.shape[1]
        centre = self.centre * np.array([-1.0, 1.0])
        mirrored = replace(
            self,
            centre=np.ascontiguousarray(centre),
            texture=np.ascontiguousarray(self.texture[:, ::-1]),
            origin=(-(x0 + (cols - 1) / self.pixels_per_metre), y1),
        )
        mirrored.__dict__.pop("_kdtree", None)
        return mirrored


def _tangents(points: np.ndarray) -> np.ndarray:
    forward = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    return forward / np.linalg.norm(forward, axis=1, keepdims=True)


def _curvature(points: np.ndarray) -> np.ndarray:
    d1 = (np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)) / 2.0
    d2 = np.roll(points, -1, axis=0) - 2.0 * points + np.roll(points, 1, axis=0)
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return cross / np.maximum(np.linalg.norm(d1, axis=1) ** 3, 1e-12)


def _signed_area(polygon: np.ndarray) -> float:
    """Shoelace area (positive for counter-clockwise polygons)."""
    return 0.5 * float(np.sum(polygon[:, 0] * np.roll(polygon[:, 1], -1) - np.roll(polygon[:, 0], -1) * polygon[:, 1]))


def _closed_spline(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One candidate loop: centre points every SAMPLE_SPACING metres and widths."""
    from scipy.interpolate import CubicSpline
    count = int(rng.integers(7, 13))
    radius = rng.uniform(35.0, 50.0)
    angles = (np.arange(count) + rng.uniform(-0.3, 0.3, count)) * 2 * np.pi / count
    radii = radius * rng.uniform(0.6, 1.35, count)
    widths = rng.uniform(6.0, 8.5, count)
    knots = np.arange(count + 1, dtype=np.float64)
    control = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    spline = CubicSpline(knots, np.vstack([control, control[:1]]), bc_type="periodic")
    width_spline = CubicSpline(knots, np.append(widths, widths[0]), bc_type="periodic")
    dense_t = np.linspace(0.0, count, count * 400, endpoint=False)
    dense = spline(dense_t)
    steps = np.linalg.norm(np.diff(np.vstack([dense, dense[:1]]), axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    # Resample to even spacing (closing segment included) so that index * spacing is arc length.
    samples = np.arange(int(round(arc[-1] / SAMPLE_SPACING))) * (arc[-1] / round(arc[-1] / SAMPLE_SPACING))
    t_even = np.interp(samples, arc, np.append(dense_t, count))
    return spline(t_even), width_spline(t_even)


def _is_valid(centre: np.ndarray, width: np.ndarray) -> bool:
    curvature = np.abs(_curvature(centre))
    if np.any(curvature > 1.0 / MIN_RADIUS) or np.any(curvature * width / 2 > 0.5):
        return False
    # Points far apart along the loop must stay far apart in space: no crossing,
    # and no two road sections touching (with 8 m of ground between them).
    from scipy.spatial import cKDTree

    n = len(centre)
    pairs = cKDTree(centre).query_pairs(r=float(width.max() + 8.0), output_type="ndarray")
    if len(pairs) == 0:
        return True
    separation = np.abs(pairs[:, 0] - pairs[:, 1])
    separation = np.minimum(separation, n - separation) * SAMPLE_SPACING
    gap = np.linalg.norm(centre[pairs[:, 0]] - centre[pairs[:, 1]], axis=1)
    needed = (width[pairs[:, 0]] + width[pairs[:, 1]]) / 2 + 8.0
    return not np.any((separation > 2.0 * np.pi * MIN_RADIUS) & (gap < needed))


def make_track(seed: int) -> Track:
    """Generate the track for ``seed`` (same seed -> same track, texture included).

    Candidates that bend tighter than ``MIN_RADIUS`` or come close to themselves
    are re-drawn from the same generator.

    Example:
        >>> track = make_track(3)
        >>> round(track.length) > 150
        True
    """
    if int(seed) < 0:
        raise ValueError(f"Expected a track seed >= 0. Received: seed={seed}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    for _ in range(1000):
        centre, width = _closed_spline(rng)
        if _is_valid(centre, width):
            break
    else:  # pragma: no cover - the generator's ranges make this practically impossible
        raise RuntimeError(f"could not draw a valid track for seed {seed}")
    theme = make_theme(rng)
    texture, origin = _paint(centre, width, theme, rng)
    spacing = float(np.mean(np.linalg.norm(np.diff(np.vstack([centre, centre[:1]]), axis=0), axis=1)))
    return Track(seed=int(seed), centre=centre, width=width, theme=theme, texture=texture, origin=origin,
                 spacing=spacing)


def _paint(
    centre: np.ndarray, width: np.ndarray, theme: Theme, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[float, float]]:
    """Render the top-down world texture once per track."""
    ppm = PIXELS_PER_METRE
    low = centre.min(axis=0) - _MARGIN
    high = centre.max(axis=0) + _MARGIN
    cols, rows = (np.ceil((high - low) * ppm).astype(int) + 1).tolist()
    x0, y1 = float(low[0]), float(high[1])

    def to_px(points: np.ndarray) -> np.ndarray:
        px = np.stack([(points[:, 0] - x0) * ppm, (y1 - points[:, 1]) * ppm], axis=1)
        return np.round(px * 16).astype(np.int32)  # 4 bits of sub-pixel precision (shift=4)

    tangent = _tangents(centre)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = (width / 2)[:, None]
    left, right = centre + half * normal, centre - half * normal

    def ring(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
        mask = np.zeros((rows, cols), np.uint8)
        cv2.fillPoly(mask, [to_px(outer)], 255, cv2.LINE_AA, 4)
        hole = np.zeros_like(mask)
        cv2.fillPoly(hole, [to_px(inner)], 255, cv2.LINE_AA, 4)
        return cv2.subtract(mask, hole)

    outer, inner = (right, left) if abs(_signed_area(right)) > abs(_signed_area(left)) else (left, right)
    road_mask = ring(outer, inner)

    def noisy(colour: tuple[int, int, int], amplitude: float, blur: float) -> np.ndarray:
        fine = rng.normal(0.0, amplitude, (rows, cols)).astype(np.float32)
        coarse = cv2.GaussianBlur(rng.normal(0.0, amplitude * 6, (rows, cols)).astype(np.float32), (0, 0), blur)
        return np.asarray(colour, np.float32) + (fine + coarse)[..., None]

    ground = noisy(theme.ground, theme.ground_noise, 6.0)
    road = noisy(theme.road, theme.road_noise, 3.0)
    alpha = (road_mask.astype(np.float32) / 255.0)[..., None]
    image = ground * (1 - alpha) + road * alpha

    # Clutter (bushes, rocks) only where the ground is at least 1.5 m from the road.
    distance = cv2.distanceTransform(255 - road_mask, cv2.DIST_L2, 5) / ppm
    free_r, free_c = np.nonzero(distance > 1.5)
    for _ in range(theme.clutter):
        k = int(rng.integers(len(free_r)))
        r, c = int(free_r[k]), int(free_c[k])
        size = rng.uniform(0.3, 1.2) * ppm
        radius = int(min(size, max(1.0, (distance[r, c] - 1.0) * ppm)))
        colour = np.asarray(theme.clutter_colours[int(rng.integers(len(theme.clutter_colours)))], float)
        cv2.circle(image, (c, r), radius, (colour * rng.uniform(0.7, 1.2)).tolist(), -1, cv2.LINE_AA)

    if theme.edge_line is not None:
        thickness = max(1, int(round(0.2 * ppm)))
        for edge in (left - 0.2 * normal, right + 0.2 * normal):
            cv2.polylines(image, [to_px(edge)], True, theme.edge_line, thickness, cv2.LINE_AA, 4)
    if theme.kerbs:
        # Red and white kerbs on the edges of the bends, 1 m stripes, like the Udacity lake track.
        bend = np.abs(_curvature(centre)) > 1.0 / 30.0
        stripe = (np.arange(len(centre)) * SAMPLE_SPACING // 1.0) % 2 == 0
        for edge, inward in ((left, -normal), (right, normal)):
            for i in np.nonzero(bend)[0]:
                j = (i + 1) % len(centre)
                quad = np.stack([edge[i], edge[j], edge[j] + 0.7 * inward[j], edge[i] + 0.7 * inward[i]])
                cv2.fillPoly(image, [to_px(quad)], (200, 30, 30) if stripe[i] else (235, 235, 235), cv2.LINE_AA, 4)
    if theme.centre_line is not None:
        # Dashes 3 m long with 3 m gaps.
        dash_samples = int(round(3.0 / SAMPLE_SPACING))
        thickness = max(1, int(0.15 * ppm))
        for start in range(0, len(centre) - dash_samples, 2 * dash_samples):
            dash = centre[start : start + dash_samples + 1]
            cv2.polylines(image, [to_px(dash)], False, theme.centre_line, thickness, cv2.LINE_AA, 4)

    # Static shadows (trees, poles) falling across the road.
    shade = np.ones((rows, cols), np.float32)
    for _ in range(theme.shadows):
        k = int(rng.integers(len(centre)))
        across = centre[k] + normal[k] * rng.uniform(-width[k], width[k])
        axes = (int(rng.uniform(1.0, 4.0) * ppm), int(rng.uniform(0.5, 2.0) * ppm))
        px = to_px(across[None])[0] // 16
        cv2.ellipse(shade, (int(px[0]), int(px[1])), axes, float(rng.uniform(0, 180)), 0, 360,
                    float(rng.uniform(0.45, 0.7)), -1, cv2.LINE_AA)
    shade = cv2.GaussianBlur(shade, (0, 0), 2.0)
    image = image * (shade[..., None] * theme.brightness)
    return np.clip(image, 0, 255).astype(np.uint8), (x0, y1)
