"""Viewer pose <-> gp3d camera (spec 3.2, 3.3, 2.1): pure maths, no viser import.

A browser viewer (viser) describes its camera as a position, an OpenCV-style rotation
``R_world_camera`` (+z looks forward, +y points down, quaternion wxyz), an orbit centre
(``look_at``) and a *vertical* field of view in radians. gp3d's "Ball-in-Sphere" camera has no
roll: its rotation follows from the origin and a look-at point with world up +y (spec 3.3), and
its fov is the full angle in degrees shared by width and height (spec 2.1). With the viewer's up
direction set to +y (as :mod:`gp3d.viewer.app` does), orbiting never rolls the camera, so a
viewer pose maps to a gp3d camera without loss:

- origin: the viewer position, in spherical coordinates (spec 3.2);
- look-at: any point on the forward ray gives the same rotation; we take the ray's point
  closest to the world origin, the one with the smallest look-at radius, i.e. the most
  "prior-like" (the prior draws look-at radii in [0, 0.2], spec 3.4);
- fov: the viewer's vertical fov. gp3d renders square images, so the render covers the
  viewport's full height (see :func:`fit_to_aspect`).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from gp3d.models.camera import cam2world, look_at_point
from gp3d.types import CameraParams

_GL_TO_CV = np.diag([1.0, -1.0, -1.0])  # OpenGL camera axes (x right, y up, -z fwd) -> OpenCV


@dataclass(frozen=True)
class ViewerPose:
    """A viewer camera in world coordinates (viser's convention)."""

    position: tuple[float, float, float]
    wxyz: tuple[float, float, float, float]  # R_world_camera, OpenCV axes
    look_at: tuple[float, float, float]  # orbit centre
    fov: float  # vertical field of view, radians


def cartesian_to_spherical(p: np.ndarray) -> tuple[float, float, float]:
    """Inverse of spec 3.2's point(yaw, pitch, r) = (r sin(p) sin(-y), r cos(p), r sin(p) cos(y)).
    Returns (yaw, pitch, r); yaw is 0 on the +y axis, where it is undefined."""
    x, y, z = (float(v) for v in p)
    r = math.sqrt(x * x + y * y + z * z)
    if r == 0.0:
        return 0.0, math.pi / 2, 0.0
    pitch = math.acos(max(-1.0, min(1.0, y / r)))
    yaw = math.atan2(-x, z) if (x * x + z * z) > 0.0 else 0.0
    return yaw, pitch, r


def quat_to_matrix(wxyz) -> np.ndarray:
    w, x, y, z = (float(v) for v in wxyz)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(m: np.ndarray) -> tuple[float, float, float, float]:
    """Rotation matrix -> unit quaternion (w, x, y, z), w >= 0 (Shepperd's method)."""
    t = float(np.trace(m))
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    sign = -1.0 if q[0] < 0 else 1.0
    return tuple(float(sign * v) for v in q)  # type: ignore[return-value]


def pose_to_camera(pose: ViewerPose) -> CameraParams:
    """A viewer pose -> one gp3d camera (batch of 1, float32). Roll is 0 by construction."""
    origin = np.asarray(pose.position, dtype=np.float64)
    forward = quat_to_matrix(pose.wxyz)[:, 2]  # OpenCV +z is the viewing direction
    along = -float(origin @ forward)  # distance to the ray's point closest to the world origin
    target = origin + forward * (along if along > 1e-6 else 1.0)
    yaw, pitch, radius = cartesian_to_spherical(origin)
    la_yaw, la_pitch, la_radius = cartesian_to_spherical(target)
    fov = math.degrees(pose.fov)
    values = [yaw, pitch, 0.0, radius, fov, la_yaw, la_pitch, la_radius]
    return CameraParams.from_tensor(torch.tensor([values], dtype=torch.float32))


def camera_to_pose(cam: CameraParams, index: int = 0) -> ViewerPose:
    """One gp3d camera -> the viewer pose that renders the same view (orbiting its look-at)."""
    c2w = cam2world(cam[index : index + 1].to(torch.float64))[0].numpy()
    rot_cv = c2w[:3, :3] @ _GL_TO_CV
    origin = c2w[:3, 3]
    target = look_at_point(cam[index : index + 1].to(torch.float64))[0].numpy()
    if np.linalg.norm(target - origin) < 1e-6:  # degenerate look-at: orbit a point ahead
        target = origin + rot_cv[:, 2]
    return ViewerPose(
        position=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        wxyz=matrix_to_quat(rot_cv),
        look_at=tuple(float(v) for v in target),  # type: ignore[arg-type]
        fov=math.radians(float(cam.fov[index])),
    )


def fit_to_aspect(image: np.ndarray, aspect: float, fill: int = 0) -> np.ndarray:
    """A square HxHxC render -> an image of the viewport's aspect (width / height) whose height
    spans the render: padded left and right when the viewport is wider, centre-cropped when it is
    narrower. The viewer stretches its background image over the viewport, so this keeps the
    render's pixels square and aligned with the 3-D scene drawn over it."""
    h, w = image.shape[:2]
    if h != w:
        raise ValueError(f"expected a square render, got {h}x{w}")
    width = max(1, round(h * aspect))
    if width == w:
        return image
    if width < w:
        left = (w - width) // 2
        return image[:, left : left + width]
    out = np.full((h, width, *image.shape[2:]), fill, dtype=image.dtype)
    left = (width - w) // 2
    out[:, left : left + w] = image
    return out
