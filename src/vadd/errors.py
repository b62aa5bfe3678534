"""The project's own exception types: what a user or a scheduler caused, as opposed to bugs."""
from __future__ import annotations

import signal


class VaddError(Exception):
    """Base class of the errors a user can act on."""


class RunInterrupted(VaddError):
    """A run stopped by SIGTERM or SIGINT; training saved a checkpoint at the step it reached first."""

    def __init__(self, signum: int, step: int = -1, checkpoint=None):
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint
        where = f" at step {self.step}; checkpoint {checkpoint}" if self.step >= 0 else ""
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}{where}; rerun the same command to resume")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the scheduler convention: 143 for SIGTERM, 130 for SIGINT
