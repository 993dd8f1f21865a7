"""Every command prints a user's mistake as one ``error:`` line with a non-zero exit status, and keeps the
traceback for bugs (:mod:`ophora.cli`)."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ophora.cli import run_command, user_message
from ophora.configs.loader import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _raising(error):
    def main(argv):
        raise error
    return main


def test_a_full_disk_is_one_line_that_says_what_to_do(capsys, monkeypatch):
    monkeypatch.delenv("OPHORA_DEBUG", raising=False)
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/table.csv")
    assert run_command(_raising(full)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "/data/out/table.csv" in err and "the disk is full" in err and "Traceback" not in err


def test_user_errors_exit_with_the_given_code_and_bugs_keep_their_traceback(capsys, monkeypatch):
    monkeypatch.delenv("OPHORA_DEBUG", raising=False)
    assert run_command(_raising(ConfigError("sedd", "unknown key (did you mean 'seed'?)", "demo.yaml")), code=2) == 2
    assert capsys.readouterr().err == "error: demo.yaml: sedd: unknown key (did you mean 'seed'?)\n"
    with pytest.raises(ZeroDivisionError):  # a bug is not a user's error
        run_command(_raising(ZeroDivisionError("division by zero")))
    assert run_command(lambda argv: 3) == 3 and run_command(lambda argv: Path("x")) == 0
    assert run_command(_raising(KeyboardInterrupt())) == 130


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("OPHORA_DEBUG", "1")
    with pytest.raises(ConfigError):
        run_command(_raising(ConfigError("seed", "bad")))


def test_a_multi_line_message_is_one_line():
    assert user_message(ValueError("first\n  second")) == "first second"
    assert user_message(OSError()) == "OSError"


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["ophora.train", "--stage", "tpt", "--config", "tiny", "--data", "{tmp}/absent", "--out", "{tmp}/run"],
    ["ophora.prepare", "--config", "tiny", "--manifest", "{tmp}/absent.csv", "--out", "{tmp}/prep"],
    ["ophora.generate", "--model", "{tmp}/absent", "--prompts", "{tmp}/p.txt", "--out", "{tmp}/gen"],
    ["benchmarks.table1", "--config", "{tmp}/absent.yaml"],
    ["downstream.table2", "--config", "{tmp}/absent.yaml"],
], ids=lambda c: c[0])
def test_commands_print_one_line_and_no_traceback(tmp_path, command):
    argv = [part.format(tmp=tmp_path) for part in command]
    env = {k: v for k, v in os.environ.items() if k != "OPHORA_DEBUG"}
    done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and str(tmp_path) in lines[0], done.stderr[-2000:]
