"""Child processes that die with their parent, however the parent dies.

The demo starts a broker, a worker and a simulator; a worker started without
`--broker` starts a broker; tests and benches start brokers and workers. A
parent that exits normally stops them in its `finally` blocks. A parent that
is SIGKILLed (a CI time-out, the OOM killer, `kill -9`) runs no `finally`:
its children used to be orphaned, holding ports, memory and CPU.

`die_with_parent()` gives `subprocess.Popen` (and `run`) the arguments for a
child that cannot outlive its parent (and `stop` is the parent's side of it):

- its own session and process group (`start_new_session`), so the parent
  stops it, and whatever it started in turn, with one `os.killpg`;
- on Linux, `prctl(PR_SET_PDEATHSIG, SIGKILL)` between fork and exec: the
  kernel kills the child when its parent dies, whatever the cause. If the
  parent died before the call took effect, the child exits at once.

Caveat (prctl(2)): the signal is sent when the *thread* that forked the child
exits, not the process. Start children from the main thread, or from a thread
that lives as long as they should.

Elsewhere (macOS, Windows) the kernel has no such call; children get their
own process group and are stopped by the parent's `finally` blocks only.

>>> import subprocess, sys
>>> subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True, **die_with_parent()).stdout
'ok\\n'
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from typing import Any, Callable

__all__ = ["die_with", "die_with_parent", "stop", "PDEATHSIG_AVAILABLE"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (never between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
PDEATHSIG_AVAILABLE = _PRCTL is not None


def die_with(parent: int) -> None:
    """In a child: be killed when `parent` dies (Linux), or exit now if it
    already has. For a child started otherwise than through `subprocess`
    (the trainer, a `multiprocessing` process), called first thing."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the call: nobody will stop this child
        os._exit(1)


def _pdeathsig(parent: int) -> Callable[[], None]:
    def in_child() -> None:  # runs in the child between fork and exec: keep it minimal
        die_with(parent)

    return in_child


def die_with_parent() -> dict[str, Any]:
    """`subprocess.Popen` keyword arguments for a child that dies with this process."""
    kwargs: dict[str, Any] = {"start_new_session": True}
    if _PRCTL is not None:
        kwargs["preexec_fn"] = _pdeathsig(os.getpid())
    return kwargs


def stop(child: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30.0, kill_wait: float = 10.0) -> None:
    """Stop a child started with `die_with_parent()` and everything it started
    (its process group): `sig` (SIGTERM: a clean shutdown), then SIGKILL if it
    has not exited within `timeout` s. A child already gone is left alone."""
    if child is None or child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=kill_wait)
