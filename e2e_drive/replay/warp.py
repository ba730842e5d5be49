"""Viewpoint synthesis: the recorded frame as a camera moved sideways and turned would see it.

Below the horizon the world is taken to be the flat ground plane, so a camera
displaced by ``(lateral, heading error)`` sees each ground point through the
plane-induced homography ``G_new @ inv(G_recorded)``, where ``G`` is the
simulator's own ground-to-image map (``CameraRig.ground_homography``). Rows
above the horizon are far away: they get the rotation only (``K R_new
R_recorded^T K^-1``), which is exact for points at infinity. The bonnet rows
belong to the car and move with the camera, so they are kept as recorded.

Geometry follows ``e2e_drive.sim``: the car frame has x forward, y left; the
lateral offset is positive to the left, the heading error positive
counter-clockwise (to the left).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from e2e_drive.replay.profiles import camera_for_size
from e2e_drive.sim.render import CameraRig


class ViewWarp:
    """Warps frames of one camera geometry to displaced viewpoints.

    Args:
        rig: camera geometry (its ``size`` must be the frames' size).
        source: which camera of the rig took the frames (``center``; ``left``/``right`` when replay
            borrows a side frame for a car far off the path).

    Example:
        >>> warp = ViewWarp(CameraRig())
        >>> view = warp(frame, lateral=0.5, heading=0.02)   # 0.5 m left, turned 1.1 degrees left
    """

    def __init__(self, rig: CameraRig, source: str = "center"):
        self.rig = rig
        self.source = source
        rows, cols = rig.size
        self.size = (int(rows), int(cols))
        # First destination row that shows ground; rows above get the rotation-only homography.
        self.split = int(np.clip(np.floor(rig.horizon_row) + 1, 0, rows))
        self.bonnet_top = int(rows - max(int(rig.bonnet_rows), 0))
        self._inverse_source = np.linalg.inv(rig.ground_homography(0.0, 0.0, 0.0, source))
        self._source_rotation = rig.pose(0.0, 0.0, 0.0, source)[0]
        k = rig.intrinsics
        self._k, self._k_inv = k, np.linalg.inv(k)

    def homographies(self, lateral: float, heading: float, target: str = "center",
                     forward: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(ground, rotation)``: 3x3 maps from source pixels to pixels of the displaced camera.

        The displaced camera is the rig's ``target`` camera on a car moved ``lateral`` metres left and
        turned ``heading`` radians left of the recording car, and ``forward`` metres ahead of it
        (``target="left"`` with no displacement: what the left camera saw, for calibration).
        """
        rotation, centre = self.rig.pose(float(forward), float(lateral), float(heading), target)
        # CameraRig.ground_homography's K [r1 r2 -R c], from the one pose (it would compute the pose again).
        ground = self._k @ np.column_stack([rotation[:, 0], rotation[:, 1], -rotation @ centre]) @ self._inverse_source
        sky = self._k @ rotation @ self._source_rotation.T @ self._k_inv
        return ground, sky

    def __call__(self, frame: np.ndarray, lateral: float = 0.0, heading: float = 0.0, target: str = "center",
                 forward: float = 0.0, out: np.ndarray | None = None,
                 rows: tuple[int, int] | None = None) -> np.ndarray:
        """The frame as seen from the displaced viewpoint (same shape and dtype; borders replicated).

        For the driver's view (``target="center"``) the bonnet rows are kept as recorded. ``rows=(first, end)``:
        only those destination rows are warped (the ones a model's crop keeps), the others are kept as recorded;
        the warped rows are the ones a whole-frame warp gives.
        """
        height, cols = self.size
        if frame.shape[:2] != (height, cols):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the camera calibration is for "
                             f"{cols}x{height}")
        first, end = (0, height) if rows is None else (max(0, int(rows[0])), min(height, int(rows[1])))
        if out is None:
            out = np.empty_like(frame)
        if rows is not None:  # the rows outside are kept as recorded (the bonnet is among them)
            out[:first], out[end:] = frame[:first], frame[end:]
        ground, sky = self.homographies(lateral, heading, target, forward)
        bottom = self.bonnet_top if target == "center" else height
        # Sky rows take the rotation only, ground rows the plane's homography: each maps image -> source.
        for image_to_source, top, stop in ((sky, 0, self.split), (ground, self.split, bottom)):
            top, stop = max(top, first), min(stop, end)
            if stop > top:  # a band the kept rows leave out costs no inversion and no warp
                _warp_band(frame, np.linalg.inv(image_to_source), top, stop, out)
        if bottom < end:
            out[bottom:end] = frame[bottom:end]
        return out


def _warp_band(frame: np.ndarray, source_from_image: np.ndarray, top: int, stop: int, out: np.ndarray) -> None:
    """Destination rows ``[top, stop)`` of ``out``: warpPerspective fills a band whose row 0 is image row ``top``."""
    image_from_band = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, float(top)], [0.0, 0.0, 1.0]])
    cv2.warpPerspective(frame, source_from_image @ image_from_band, (frame.shape[1], stop - top), dst=out[top:stop],
                        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


class CameraWarps:
    """``warp(image, lateral, heading, camera)``: any camera of a rig, moved and turned with its car.

    The view-synthesis callable of ``data_tools.augment.ViewpointShift``: a frame of camera ``camera``
    (``center``, ``left``, ``right``) becomes what that camera would see on a car ``lateral`` metres further
    left and turned ``heading`` radians left. Frames of another size than the rig's use the rig scaled to them
    (``camera_for_size``); one ``ViewWarp`` per camera and size is kept.

    ``seen_rows(height) -> (first, end)``: warp only the rows a model will see (its crop, and the rows later
    transforms can move into it); the others are kept as recorded. Defaults to every row.

    Example:
        >>> warps = CameraWarps(get_profile("udacity").camera)
        >>> view = warps(frame, 0.5, 0.02, "left")
    """

    def __init__(self, rig: CameraRig, seen_rows: Callable[[int], tuple[int, int]] | None = None):
        self.rig = rig
        self.seen_rows = seen_rows
        self._warps: dict[tuple[str, tuple[int, int]], ViewWarp] = {}

    def __call__(self, image: np.ndarray, lateral: float, heading: float, camera: str = "center") -> np.ndarray:
        key = (camera, tuple(image.shape[:2]))
        warp = self._warps.get(key)
        if warp is None:
            warp = self._warps[key] = ViewWarp(camera_for_size(self.rig, key[1]), source=camera)
        rows = None if self.seen_rows is None else self.seen_rows(image.shape[0])
        return warp(image, lateral, heading, target=camera, rows=rows)

    def __repr__(self) -> str:
        return f"CameraWarps({self.rig!r})"
