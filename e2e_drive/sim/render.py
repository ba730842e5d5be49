"""The car's cameras: a pinhole view of the flat world through one homography per frame.

The ground is the plane z = 0, so the map from texture pixels to image pixels
is a 3x3 homography ``K [r1 r2 t] T^-1``; ``cv2.warpPerspective`` renders the
band of rows below the horizon, the sky above it is a precomputed gradient,
distance haze softens the far rows and the car's bonnet covers the bottom rows,
as in the Udacity simulator's 320x160 frames (horizon near row 55, bonnet in the
bottom ~23 rows, so ``default_crop(160) = (60, 25)`` keeps only road).

``render_raycast`` is the naive per-pixel ray cast of the same picture: the
benchmark baseline and the tests' oracle for the homography.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from e2e_drive.sim.track import Track

FRAME_HEIGHT = 160
FRAME_WIDTH = 320
CAMERAS = ("center", "left", "right")


@dataclass(frozen=True)
class CameraRig:
    """Where the cameras sit on the car and what they see.

    Args:
        height: camera height above the ground (metres). Defaults to `1.6`.
        pitch_deg: downward pitch (degrees). Defaults to `7.5`, which puts the horizon near row 56.
        focal: focal length in pixels. Defaults to `180` (83 degrees horizontal field of view).
        forward: camera position ahead of the rear axle (metres). Defaults to `1.5`.
        side_offset: lateral offset of the left/right cameras (metres), like the Udacity car. Defaults to `1.1`.
        bonnet_rows: rows the bonnet covers at the image centre. Defaults to `23`.
        haze_distance: metres at which the haze reaches 63% (``1 - exp(-(d / haze_distance)^2)``). Defaults to `90`.
    """

    height: float = 1.6
    pitch_deg: float = 7.5
    focal: float = 180.0
    forward: float = 1.5
    side_offset: float = 1.1
    bonnet_rows: int = 23
    haze_distance: float = 90.0
    size: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH)

    @property
    def intrinsics(self) -> np.ndarray:
        rows, cols = self.size
        # Principal point at the exact centre, so a mirrored world gives the exactly flipped frame.
        return np.array([[self.focal, 0.0, (cols - 1) / 2], [0.0, self.focal, (rows - 1) / 2], [0.0, 0.0, 1.0]])

    @property
    def horizon_row(self) -> float:
        """Image row of the horizon (a fraction: the sky ends above it)."""
        return (self.size[0] - 1) / 2 - self.focal * np.tan(np.radians(self.pitch_deg))

    @property
    def ground_start(self) -> int:
        """First row that shows ground (one row of margin below the horizon)."""
        return int(np.floor(self.horizon_row)) + 2

    def lateral(self, camera: str) -> float:
        """Sideways offset of ``camera`` (metres, positive = right)."""
        return {"center": 0.0, "left": -self.side_offset, "right": self.side_offset}[camera]

    def pose(self, x: float, y: float, heading: float, camera: str = "center") -> tuple[np.ndarray, np.ndarray]:
        """Rotation (rows: image right, image down, optical axis) and centre of a camera in the world."""
        forward = np.array([np.cos(heading), np.sin(heading), 0.0])
        right = np.array([np.sin(heading), -np.cos(heading), 0.0])
        up = np.array([0.0, 0.0, 1.0])
        pitch = np.radians(self.pitch_deg)
        axis = np.cos(pitch) * forward - np.sin(pitch) * up
        down = np.cross(axis, right)
        rotation = np.stack([right, down, axis])
        centre = np.array([x, y, self.height]) + self.forward * forward + self.lateral(camera) * right
        return rotation, centre

    def ground_homography(self, x: float, y: float, heading: float, camera: str = "center") -> np.ndarray:
        """3x3 map from ground-plane world ``(x, y, 1)`` to image pixels: ``K [r1 r2 -R c]``."""
        rotation, centre = self.pose(x, y, heading, camera)
        return self.intrinsics @ np.column_stack([rotation[:, 0], rotation[:, 1], -rotation @ centre])

    def homography(self, track: Track, x: float, y: float, heading: float, camera: str = "center") -> np.ndarray:
        """3x3 map from texture pixels to image pixels for a car at ``(x, y, heading)``."""
        return self.ground_homography(x, y, heading, camera) @ np.linalg.inv(track.world_to_texture())


@dataclass
class Camera:
    """Renders first-person RGB frames of one track.

    Args:
        track: the world to look at.
        rig: camera geometry. Defaults to `CameraRig()`.

    Example:
        >>> track = make_track(0)
        >>> camera = Camera(track)
        >>> camera.render(*track.centre[0], track.heading[0], "left").shape
        (160, 320, 3)
    """

    track: Track
    rig: CameraRig = field(default_factory=CameraRig)

    def __post_init__(self) -> None:
        rows, cols = self.rig.size
        theme = self.track.theme
        start = self.rig.ground_start
        # Sky: vertical gradient to the horizon colour, scaled by the theme's lighting.
        t = np.clip(np.arange(rows, dtype=np.float32) / max(self.rig.horizon_row, 1.0), 0, 1)[:, None, None]
        sky = (1 - t) * np.asarray(theme.sky_top, np.float32) + t * np.asarray(theme.sky_horizon, np.float32)
        sky = np.clip(sky * min(theme.brightness * 1.1, 1.0), 0, 255)
        self._background = np.broadcast_to(sky, (rows, cols, 3)).astype(np.uint8).copy()
        self._haze_colour = self._background[max(start - 1, 0), 0].astype(np.float32)
        # Haze: blend weight per ground row from the distance the row looks at.
        v = np.arange(start, rows, dtype=np.float64)
        angle = np.arctan((v - (rows - 1) / 2) / self.rig.focal) + np.radians(self.rig.pitch_deg)
        distance = self.rig.height / np.tan(np.maximum(angle, 1e-6))
        haze = 1.0 - np.exp(-((distance / self.rig.haze_distance) ** 2))
        self._haze_rows = int(np.count_nonzero(haze > 0.02))
        # Per-pixel weights for cv2.blendLinear (far ground toward the haze colour).
        self._haze = np.repeat(haze[: self._haze_rows, None], cols, axis=1).astype(np.float32)
        self._haze_layer = np.broadcast_to(self._haze_colour, (self._haze_rows, cols, 3)).astype(np.uint8).copy()
        self._clear = 1.0 - self._haze
        self._bonnet = {camera: self._bonnet_layer(camera) for camera in CAMERAS}
        self._to_band = np.array([[1.0, 0, 0], [0, 1.0, -start], [0, 0, 1.0]])
        self._texture_from_world = np.linalg.inv(self.track.world_to_texture())
        self._ground_colour = tuple(int(c * theme.brightness) for c in theme.ground)

    def _bonnet_layer(self, camera: str) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """(first row, first fully covered row, mask, 1 - mask, colours) of the bonnet as seen by ``camera``."""
        rows, cols = self.rig.size
        top = rows - self.rig.bonnet_rows - 6
        u = np.arange(cols, dtype=np.float64)
        # The bonnet's centre shifts opposite to the camera's sideways offset.
        centre = (cols - 1) / 2 - self.rig.lateral(camera) * self.rig.focal / 2.5
        edge = rows - self.rig.bonnet_rows + 14.0 * ((u - centre) / (cols / 2)) ** 2
        v = np.arange(top, rows, dtype=np.float64)[:, None]
        mask = np.clip(v - edge[None, :] + 0.5, 0, 1).astype(np.float32)
        shade = 1.0 - 0.4 * (v - top) / (rows - top)
        colours = np.asarray(self.track.theme.bonnet, np.float32)[None, None, :] * shade[..., None]
        # A soft highlight just below the bonnet's top edge, brightest in the middle.
        highlight = (np.exp(-(((u - centre) / 30.0) ** 2))[None, :, None]
                     * np.exp(-((v - edge[None, :] - 3) ** 2) / 4)[..., None])
        colours = np.clip(np.round(colours + 70.0 * highlight), 0, 255).astype(np.uint8)
        # Rows the bonnet covers completely need no ground rendered under them.
        covered = np.nonzero(np.all(mask >= 1.0, axis=1))[0]
        solid = top + int(covered[0]) if len(covered) else rows
        return top, solid, mask[: solid - top], 1.0 - mask[: solid - top], colours

    def render(self, x: float, y: float, heading: float, camera: str = "center") -> np.ndarray:
        """The ``(160, 320, 3)`` uint8 RGB frame of ``camera`` on a car at ``(x, y, heading)``."""
        rows, cols = self.rig.size
        start = self.rig.ground_start
        solid = self._bonnet[camera][1]
        frame = self._background.copy()
        world_to_image = self.rig.ground_homography(x, y, heading, camera)
        band_to_texture = np.linalg.inv(self._to_band @ world_to_image @ self._texture_from_world)
        cv2.warpPerspective(
            self.track.texture, band_to_texture, (cols, solid - start), dst=frame[start:solid],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
            borderValue=self._ground_colour,
        )
        self._finish(frame, camera)
        return frame

    def _finish(self, frame: np.ndarray, camera: str) -> None:
        start = self.rig.ground_start
        far = frame[start : start + self._haze_rows]
        far[:] = cv2.blendLinear(self._haze_layer, far, self._haze, self._clear)
        top, solid, mask, clear, colours = self._bonnet[camera]
        frame[top:solid] = cv2.blendLinear(colours[: solid - top], frame[top:solid], mask, clear)
        frame[solid:] = colours[solid - top :]

    def render_raycast(self, x: float, y: float, heading: float, camera: str = "center") -> np.ndarray:
        """The same frame by casting one ray per pixel in NumPy (bilinear texture lookup).

        The slow, obvious implementation: the baseline of ``e2e-drive bench sim``
        and the oracle that the homography in ``render`` is tested against.
        """
        rows, cols = self.rig.size
        start = self.rig.ground_start
        rotation, centre = self.rig.pose(x, y, heading, camera)
        v, u = np.mgrid[start:rows, 0:cols].astype(np.float64)
        k = self.rig.intrinsics
        rays_camera = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
        rays = rays_camera @ rotation  # camera -> world: R^T applied to row vectors
        distance = -centre[2] / rays[..., 2]
        hit = centre[None, None, :] + distance[..., None] * rays
        to_texture = self.track.world_to_texture()
        col = to_texture[0, 0] * hit[..., 0] + to_texture[0, 2]
        row = to_texture[1, 1] * hit[..., 1] + to_texture[1, 2]
        texture = self.track.texture.astype(np.float64)
        c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
        fc, fr = (col - c0)[..., None], (row - r0)[..., None]
        ground_colour = np.array(self._ground_colour, np.float64)

        def sample(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            inside = (r >= 0) & (r < texture.shape[0]) & (c >= 0) & (c < texture.shape[1])
            values = texture[np.clip(r, 0, texture.shape[0] - 1), np.clip(c, 0, texture.shape[1] - 1)]
            return np.where(inside[..., None], values, ground_colour)

        ground = ((1 - fr) * ((1 - fc) * sample(r0, c0) + fc * sample(r0, c0 + 1))
                  + fr * ((1 - fc) * sample(r0 + 1, c0) + fc * sample(r0 + 1, c0 + 1)))
        frame = self._background.copy()
        frame[start:] = np.clip(np.round(ground), 0, 255).astype(np.uint8)
        self._finish(frame, camera)
        return frame


def sample_frames(count: int, seed: int = 0, tracks: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """``count`` centre-camera frames ``(count, 160, 320, 3)`` uint8 from random poses near the centre line.

    For calibration and parity checks that need realistic frames without a recording
    (e.g. int8 quantization); the same ``seed`` gives the same frames.
    """
    from e2e_drive.sim.track import make_track

    rng = np.random.default_rng(seed)
    cameras = [Camera(make_track(t)) for t in tracks]
    frames = np.empty((count, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    for k in range(count):
        camera = cameras[int(rng.integers(len(cameras)))]
        track = camera.track
        station = rng.uniform(0.0, track.length)
        index = int(station / track.spacing) % len(track.centre)
        offset = rng.uniform(-1.0, 1.0) * track.intervention_offset[index]
        x, y = track.point_at(np.array([station]), offset)[0]
        frames[k] = camera.render(x, y, track.heading[index] + rng.normal(0.0, 0.05), str(rng.choice(CAMERAS)))
    return frames
