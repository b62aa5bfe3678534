"""The memory budget: a request sized by the user (samples, steps, sequence length, latent size, an array
file's header) is checked against this machine's memory before anything is allocated, and refused with one
line naming what to lower, instead of an allocator traceback or the OOM killer."""
from __future__ import annotations

import os

from .errors import ConfigError


def memory_bytes() -> int:
    """Physical memory of this machine (a generous default where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_alloc(nbytes: float, what: str, fix: str | None = None) -> None:
    """Refuse a request whose arrays alone would take more than half of this machine's memory, before they
    are allocated; ``fix`` names the flag or key to lower."""
    if nbytes > memory_bytes() / 2:
        raise ConfigError(f"{what} would take {nbytes / 2**30:,.1f} GiB, more than half of this machine's "
                          f"{memory_bytes() / 2**30:,.0f} GiB; {f'lower {fix}' if fix else 'ask for less'}")
