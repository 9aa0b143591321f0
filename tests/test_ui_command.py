"""`twin ui` from any folder: absolute paths for the processes `dagster dev` starts, and no
"Use 'dg dev' instead" hint. The real `dagster dev`, killed (its own process group) once it serves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.cli import ui_command
from twin.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the checkout, with a TWIN_HOME of its own."""
    folder = tmp_path / "somewhere-else"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TWIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    monkeypatch.delenv("TWIN_TRAINING_PYTHON", raising=False)
    return folder


def test_the_ui_processes_find_the_training_environment_from_any_folder(elsewhere: Path) -> None:
    command, env = ui_command(Settings.from_env(), "3000")
    python = Path(env["TWIN_TRAINING_PYTHON"])
    assert python.is_absolute() and python.exists() and python == REPO / ".venv-train" / "bin" / "python"
    # what the code server and its run workers compute, in another process and folder
    probe = subprocess.run(
        [sys.executable, "-c", "from orchestration.definitions import defs; "
                               "print(defs().resources['training'].settings().training_python)"],
        cwd=elsewhere, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().splitlines()[-1] == str(python)


def test_a_relative_training_python_is_taken_from_the_folder_it_was_set_in(elsewhere: Path, monkeypatch) -> None:
    monkeypatch.setenv("TWIN_TRAINING_PYTHON", "envs/train/bin/python")
    _, env = ui_command(Settings.from_env(), "3000")
    assert env["TWIN_TRAINING_PYTHON"] == str(elsewhere / "envs" / "train" / "bin" / "python")


def test_dagster_dev_starts_without_the_dg_dev_hint(elsewhere: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command, env = ui_command(Settings.from_env(), str(port))
    process = subprocess.Popen(command, cwd=elsewhere, env={**env, "PYTHONPATH": str(REPO)}, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Serving dagster-webserver" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(process.pid, signal.SIGINT)  # dagster dev stops its webserver, daemon, code servers
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(lines)
    assert "Serving dagster-webserver" in output, output[-3000:]
    assert "dg dev" not in output and "superseded" not in output
