"""A child process tree that cannot outlive whoever started it: its own process group, killed as
one (SIGTERM, then SIGKILL) when the starter is interrupted, and, on Linux, a SIGTERM to the child
when its parent dies without cleaning up (kill -9 of a run worker)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 10.0  # SIGTERM first; what is still alive after this gets SIGKILL
# Loaded here, in the parent: between fork and exec the child only makes the call (no dlopen).
_PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGTERM this child when the thread that started it ends."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def popen_group(command: list[str], **kwargs) -> subprocess.Popen:
    """Popen in a new session (so a process group of its own, led by the child)."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent, **kwargs)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S,
               log: Callable[[str], None] | None = None) -> None:
    """SIGTERM every process of the child's group, SIGKILL what is left after `grace_s`, and
    return only when the whole group is gone (the child itself reaped)."""
    pgid = process.pid  # the session leader's pid is its group id
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if log:
            log(f"sent {signal.Signals(sig).name} to process group {pgid}")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process.poll() is not None and not group_alive(pgid):
                return
            time.sleep(0.1)
    process.wait()
