"""``WorkerStats``: the counters of what a worker did, which ``Worker.run`` returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class WorkerStats:
    """What a worker did: tasks claimed, and completions accepted by outcome (``retried`` are
    retryable failures with attempts left), plus tasks ``lost`` (lease no longer held) and
    completions refused as ``fenced``."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0
    fenced: int = 0
    #: Completions errand received but whose write its store did not confirm in time.
    unconfirmed: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter by its name."""
        return asdict(self)
