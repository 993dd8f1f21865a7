"""Every command prints a user's mistake as one ``error:`` line with a non-zero exit status, and keeps the
traceback for bugs (:mod:`ophora.cli`), and the shared flags mean the same in every command."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ophora.cli import (
    HelpFormatter,
    UsageError,
    add_cache,
    add_output,
    add_overrides,
    add_progress,
    add_seed,
    make_parser,
    plain_text,
    run_command,
    user_message,
)
from ophora.configs.loader import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _raising(error):
    def main(argv):
        raise error
    return main


def test_a_full_disk_is_one_line_that_says_what_to_do(capsys, monkeypatch):
    monkeypatch.delenv("OPHORA_DEBUG", raising=False)
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/table.csv")
    assert run_command(_raising(full)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "/data/out/table.csv" in err and "the disk is full" in err and "Traceback" not in err


def test_user_errors_exit_with_the_given_code_and_bugs_keep_their_traceback(capsys, monkeypatch):
    monkeypatch.delenv("OPHORA_DEBUG", raising=False)
    assert run_command(_raising(ConfigError("sedd", "unknown key (did you mean 'seed'?)", "demo.yaml"))) == 2
    assert capsys.readouterr().err == "error: demo.yaml: sedd: unknown key (did you mean 'seed'?)\n"
    assert run_command(_raising(UsageError("--a and --b exclude each other")), code=3) == 3
    assert capsys.readouterr().err == "error: --a and --b exclude each other\n"
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
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and str(tmp_path) in lines[0], done.stderr[-2000:]


def _shared_parser():
    parser = make_parser("ophora.example", "Writes ``clips`` with :func:`ophora.sim.world.build_world`.")
    add_output(parser, required=True)
    add_cache(parser)
    add_seed(parser, default=7)
    add_progress(parser)
    add_overrides(parser)
    return parser


def test_the_shared_flags_and_their_aliases():
    parser = _shared_parser()
    args = parser.parse_args(["--output", "o", "--work", "w", "--quiet", "--set", "a.b=1", "--set", "c=x=y"])
    assert (args.out, args.cache, args.seed, args.progress, args.set) == (Path("o"), Path("w"), 7, False,
                                                                          ["a.b=1", "c=x=y"])
    args = parser.parse_args(["-o", "o", "--cache", "c", "--seed", "3"])
    assert (args.out, args.cache, args.seed, args.progress, args.set) == (Path("o"), Path("c"), 3, True, [])
    assert parser.parse_args(["--out", "o", "--no-progress"]).progress is False
    assert parser.parse_args(["--out", "o", "--progress"]).progress is True


@pytest.mark.parametrize("argv", [["--out", "o", "--set", "novalue"], ["--out", "o", "--set", "=1"],
                                  ["--out", "o", "--progress", "--quiet"], ["--seed", "1"]])
def test_a_bad_shared_flag_is_a_usage_error_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        _shared_parser().parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err


def test_help_shows_defaults_and_plain_text(capsys, monkeypatch):
    parser = _shared_parser()
    parser.add_argument("--frames", type=int, default=33, help="frames per ``clip``")
    parser.add_argument("--name", default=None, help="a name")
    help_text = parser.format_help()
    assert help_text.startswith("usage: python -m ophora.example ")
    assert "Writes clips with ophora.sim.world.build_world." in help_text
    assert "frames per clip (default: 33)" in " ".join(help_text.split())
    assert "(default: 7)" in help_text and "(default: None)" not in help_text and "(default: False)" not in help_text
    assert "``" not in help_text and ":func:" not in help_text
    assert isinstance(parser.formatter_class(prog="x"), HelpFormatter)
    monkeypatch.setattr("ophora.flags._launcher", "ophora")
    assert make_parser("ophora.example").prog == "ophora example"


def test_plain_text_drops_sphinx_markup_only():
    assert plain_text("see :mod:`ophora.cli` and ``--set`` or :class:`~a.B`; keep `x` and a*b") == \
        "see ophora.cli and --set or a.B; keep `x` and a*b"
