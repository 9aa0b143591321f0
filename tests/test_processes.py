"""The training process tree's lifetime (training/processes.py), with real processes: a group
stopped as one, a child that ignores SIGTERM killed after the grace period, and a child that dies
with its parent when the parent is killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from training.processes import group_alive, popen_group, stop_group

# A child that starts a grandchild (same group) which ignores SIGTERM, prints its pid, and waits.
STUBBORN_TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
    stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(120)
"""


def test_stop_group_kills_the_whole_tree_even_what_ignores_sigterm() -> None:
    process = popen_group([sys.executable, "-c", STUBBORN_TREE], stdout=subprocess.PIPE, text=True)
    grandchild = int(process.stdout.readline())
    assert os.getpgid(grandchild) == process.pid != os.getpgid(0)
    started = time.monotonic()
    stop_group(process, grace_s=1.0)
    assert process.returncode == -signal.SIGTERM
    assert not group_alive(process.pid)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - started < 15


# A parent that starts a sleeping child with popen_group, prints the child's pid, and waits.
PARENT = """
import sys, time
from training.processes import popen_group
child = popen_group([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_child_dies_when_its_parent_is_killed_with_minus_9() -> None:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": repo})
    child = int(parent.stdout.readline())
    assert psutil.pid_exists(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.1)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
