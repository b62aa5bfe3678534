"""The project's own exception types: what a user or a scheduler caused, as opposed to bugs.

The CLI prints a :class:`VaddError` as one line and exits with status 2; anything else is a bug and
surfaces as a traceback with status 1 (``VADD_DEBUG=1`` shows the traceback of every error). Each
subclass also inherits the builtin it replaced, so library callers catching ``ValueError`` or
``FileNotFoundError`` keep working.
"""
from __future__ import annotations

import signal


def first_line(e: BaseException, limit: int = 160) -> str:
    """A third-party exception's message as one line (its type name when the message is empty)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]


class VaddError(Exception):
    """Base class of the errors a user can act on."""


class ConfigError(VaddError, ValueError):
    """An invalid configuration key or value, or an invalid argument to a command or function."""


class DataError(VaddError, ValueError):
    """Data that cannot be used: unreadable files, wrong shapes or types, tokens outside the vocabulary."""


class CheckpointError(VaddError, ValueError):
    """A model folder or training checkpoint that is corrupted or belongs to another model or run."""


class RunError(VaddError, ValueError):
    """A run folder or output path that cannot be used: in use by another process, holding another run,
    not writable, or the disk is full."""


class MissingFile(VaddError, FileNotFoundError):
    """A data file, model folder or checkpoint that does not exist."""


class MissingAsset(MissingFile):
    """An offline asset (data set, tokenizer, evaluation network) that the setup script has not installed."""


class MissingDependency(VaddError, ImportError):
    """An optional Python package a feature needs; the message names the install command."""


class TrainingDiverged(VaddError, FloatingPointError):
    """A non-finite training loss; the last good checkpoint is kept."""


class RunInterrupted(VaddError):
    """A run stopped by SIGTERM or SIGINT; training saved a checkpoint at the step it reached first."""

    def __init__(self, signum: int, step: int = -1, checkpoint=None,
                 rerun: str = "rerun the same command to resume"):
        self.signum, self.step, self.checkpoint, self.rerun = int(signum), int(step), checkpoint, rerun
        where = f" at step {self.step}; checkpoint {checkpoint}" if self.step >= 0 else ""
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}{where}; {rerun}")

    def __reduce__(self):  # crosses process boundaries (benchmark workers) with its fields, not its message
        return type(self), (self.signum, self.step, self.checkpoint, self.rerun)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the scheduler convention: 143 for SIGTERM, 130 for SIGINT
