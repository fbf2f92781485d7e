"""Render scheduling for the viewer: coarse while the view changes, refined once it settles.

Pure bookkeeping (time is passed in), so it is tested without a browser or a clock. A *view* is
any hashable description of what to draw (camera, seed, class, truncation, ...). The renderer
thread asks :meth:`RenderScheduler.next_job` what to draw; only the latest view is ever drawn
(stale requests are dropped, so a slow render never builds a queue behind the mouse).
"""

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class RenderJob:
    view: Hashable
    resolution: int
    final: bool  # the full-resolution render of a settled view


class RenderScheduler:
    """Preview at ``preview_resolution`` while the view changed less than ``settle_s`` ago,
    then one render at ``full_resolution``; nothing once that is shown."""

    def __init__(self, preview_resolution: int, full_resolution: int, settle_s: float = 0.3):
        if not 0 < preview_resolution <= full_resolution:
            raise ValueError(
                f"need 0 < preview_resolution ({preview_resolution}) <= full_resolution "
                f"({full_resolution})"
            )
        self.preview_resolution, self.full_resolution = preview_resolution, full_resolution
        self.settle_s = settle_s
        self._view: Hashable | None = None
        self._changed_at = float("-inf")
        self._shown: tuple[Hashable, int] | None = None  # (view, resolution) on screen
        self._running: RenderJob | None = None

    @property
    def view(self) -> Hashable | None:
        """The latest view asked for."""
        return self._view

    def update(self, view: Hashable, now: float) -> None:
        """The user changed something: ``view`` is what the page should show now."""
        if view != self._view:
            self._view, self._changed_at = view, now

    def invalidate(self) -> None:
        """What was shown is stale although the view is the same (e.g. a new checkpoint)."""
        self._shown = None
        self._changed_at = float("-inf")

    def next_job(self, now: float) -> RenderJob | None:
        """The render to start now, or None (nothing to do, or wait for the view to settle)."""
        if self._view is None or self._running is not None:
            return None
        settled = now - self._changed_at >= self.settle_s
        if settled:
            if self._shown == (self._view, self.full_resolution):
                return None
            job = RenderJob(self._view, self.full_resolution, final=True)
        else:
            if self._shown is not None and self._shown[0] == self._view:
                return None  # this view's preview is up; refine once it settles
            job = RenderJob(self._view, self.preview_resolution, final=False)
        self._running = job
        return job

    def done(self, job: RenderJob) -> None:
        """``job`` finished and its image is on screen."""
        if self._running == job:
            self._running = None
        self._shown = (job.view, job.resolution)

    def failed(self, job: RenderJob) -> None:
        """``job`` raised; do not retry the same view until it changes."""
        if self._running == job:
            self._running = None
        self._shown = (job.view, self.full_resolution)

    def wait_s(self, now: float) -> float:
        """How long the renderer thread may sleep before :meth:`next_job` could say something
        new without a further :meth:`update` (0 when a job is due)."""
        if self._view is None or self._running is not None:
            return float("inf")
        if self._shown == (self._view, self.full_resolution):
            return float("inf")
        remaining = self.settle_s - (now - self._changed_at)
        if remaining <= 0 or self._shown is None or self._shown[0] != self._view:
            return 0.0
        return remaining
