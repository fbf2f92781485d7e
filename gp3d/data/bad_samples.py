"""Bad samples never cost a run (issue 15 item 5): skipped, counted by reason and shard, logged,
and training stopped with one clear error when too large a fraction of the data is bad.

Where the counts live: every process that reads data (the main process with ``num_workers=0``,
else each DataLoader worker) has its own :class:`SkipTally`; webdataset's error handlers
(``handler=tally.handler``) feed it. The events of a worker travel to the main process inside
the next batch it yields (``PinnableBatch.skipped``), where the data module adds them to its own
tally, logs them and applies the threshold over all workers. A worker also applies the threshold
to its own counts, so data that is all bad stops the run instead of never yielding a batch.
"""

import logging
from collections import Counter
from typing import NamedTuple

log = logging.getLogger("gp3d.data")

# Reasons a sample is skipped; each is logged as the metric ``data/skipped_<reason>``.
REASONS = ("image", "depth", "label", "embedding", "missing", "shape", "shard")
_FIELD_REASON = {"depth.png": "depth", "cls": "label", "emb.npy": "embedding"}


class SkipEvent(NamedTuple):
    reason: str  # one of REASONS
    url: str  # the shard
    key: str  # the sample key ("" for a shard-level error)
    detail: str  # what was wrong, for the log


class BadSample(ValueError):
    """A sample that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, url: str, key: str, detail: str) -> None:
        super().__init__(f"{reason}: sample {key!r} of {url}: {detail}")
        self.event = SkipEvent(reason, str(url), str(key), detail)


class TooMuchBadData(RuntimeError):
    """More than ``data.max_bad_fraction`` of the samples read were bad."""


def field_reason(field: str) -> str:
    """The skip reason of a field that failed to decode (image for every image key)."""
    return _FIELD_REASON.get(field, "image")


def too_many_bad(bad: int, seen: int, max_fraction: float, min_samples: int) -> bool:
    """Whether ``bad`` of ``seen`` samples is too many: the fraction is judged once
    ``min_samples`` were read; before that, up to ``max_fraction * min_samples`` bad ones pass
    (one bad sample among the first few must not stop a run)."""
    return bad > max_fraction * max(seen, min_samples)


class SkipTally:
    """Counts of skipped samples by reason and by shard in one process (see module docstring).

    Args:
        max_fraction: bad / read above which reading stops (:func:`too_many_bad`).
        min_samples: samples read before the fraction is judged.
        log_first: bad samples logged one by one; later ones only in the counts.
    """

    def __init__(self, max_fraction: float, min_samples: int = 1000, log_first: int = 20) -> None:
        if not 0.0 <= max_fraction < 1.0:
            raise ValueError(
                f"data.max_bad_fraction={max_fraction} must be in [0, 1): with 1 a dataset "
                "whose every sample is bad would be read for ever"
            )
        self.max_fraction, self.min_samples, self.log_first = max_fraction, min_samples, log_first
        self.by_reason: Counter[str] = Counter()
        self.by_shard: Counter[str] = Counter()
        self.good = 0
        self.pending: list[SkipEvent] = []

    @property
    def bad(self) -> int:
        return sum(self.by_reason.values())

    def handler(self, exn: Exception) -> bool:
        """webdataset error handler: count a :class:`BadSample` and go on (True); anything else
        is a bug and propagates."""
        if not isinstance(exn, BadSample):
            return False
        self.pending.append(exn.event)
        self.add([exn.event], log_them=False)
        return True

    def add(self, events: list[SkipEvent] | tuple[SkipEvent, ...], log_them: bool = True) -> None:
        for event in events:
            if log_them and self.bad < self.log_first:
                log.warning(
                    "skipped a bad sample (%s): key %r of shard %s: %s%s",
                    event.reason, event.key, event.url, event.detail,
                    " (further ones are only counted)" if self.bad == self.log_first - 1 else "",
                )  # fmt: skip
            self.by_reason[event.reason] += 1
            self.by_shard[event.url] += 1
        self.check()

    def add_good(self, n: int) -> None:
        self.good += n

    def drain(self) -> tuple[SkipEvent, ...]:
        """The events since the last drain (to send to the main process with a batch)."""
        events, self.pending = tuple(self.pending), []
        return events

    def metrics(self) -> dict[str, float]:
        seen = self.good + self.bad
        out = {f"data/skipped_{r}": float(self.by_reason[r]) for r in REASONS}
        out["data/skipped_fraction"] = self.bad / seen if seen else 0.0
        return out

    def check(self) -> None:
        bad, seen = self.bad, self.good + self.bad
        if not too_many_bad(bad, seen, self.max_fraction, self.min_samples):
            return
        reasons = ", ".join(f"{r} {n}" for r, n in self.by_reason.most_common())
        worst = ", ".join(f"{u} ({n})" for u, n in self.by_shard.most_common(5))
        raise TooMuchBadData(
            f"{bad} of the {seen} samples read were bad ({bad / seen:.1%}; allowed: "
            f"data.max_bad_fraction={self.max_fraction} once {self.min_samples} were read). "
            f"By reason: {reasons}. Worst shards: {worst}. Check the dataset with `python -m "
            "data_prep.validate <folder>` and re-create the bad shards, or raise "
            "data.max_bad_fraction."
        )
