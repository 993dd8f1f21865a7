"""The ophora command: every tool behind one name, the same options and exit statuses as its python -m form."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ophora
from ophora import __main__ as launcher
from ophora.cli import run_command
from ophora.sim.world import WorldConfig

ROOT = Path(__file__).resolve().parents[1]
# the commands whose help this helper converted to the shared conventions (ophora.flags); the others keep theirs
CONVERTED = ("sim", "curate", "prepare", "train", "generate", "results", "sanity", "weights", "rate")


def test_python_m_ophora_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "ophora"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stderr == ""
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == ["evaluate", "sim", "curate", "prepare", "train", "generate", "table1", "table2", "sanity",
                      "weights", "rate", "results"]
    assert f"Ophora suite {ophora.__version__}" in done.stdout and "sanity = benchmarks.sanity" in done.stdout


def test_every_command_has_its_python_m_module():
    for command in launcher.COMMANDS:
        module = ROOT / Path(*command.module.split("."))
        assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), command


@pytest.mark.parametrize("name", [c.name for c in launcher.COMMANDS])
def test_help_of_every_command(name, capsys):
    with pytest.raises(SystemExit) as stop:
        launcher.main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    if name in CONVERTED:
        assert out.startswith(f"usage: ophora {name} ")
        assert "``" not in out and ":mod:" not in out and ":class:" not in out
        assert "(default: None)" not in out and "(default: False)" not in out


def test_help_names_the_command_and_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        launcher.main(["help", "sim"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: ophora sim [-h] --out DIR")
    assert "frames per phase clip (8 fps) (default: 33)" in out and "(default: 128x128)" in out
    assert launcher.main(["help"]) == 0 and "commands:" in capsys.readouterr().out
    assert launcher.main(["--version"]) == 0 and capsys.readouterr().out == f"ophora {ophora.__version__}\n"


def test_an_unknown_command_is_one_error_line_with_a_suggestion(capsys):
    assert launcher.main(["evalute", "--real", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ophora: unknown command 'evalute' (did you mean 'evaluate'?")


def test_a_usage_error_exits_2_through_the_launcher_and_names_the_command(capsys):
    with pytest.raises(SystemExit) as stop:
        launcher.main(["sim", "--videos", "1"])  # --out is required
    assert stop.value.code == 2
    assert "ophora sim: error: the following arguments are required: --out" in capsys.readouterr().err
    assert launcher.main(["sim", "--out", "x", "--size", "63x64"]) == 2  # WorldConfig refuses an odd size
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "even" in err and err.count("\n") == 1


def test_a_value_error_is_a_users_mistake_only_when_the_suite_raised_it(capsys, monkeypatch):
    monkeypatch.delenv("OPHORA_DEBUG", raising=False)

    def suite_check(argv):
        WorldConfig(size=(63, 64))  # ophora.sim.world checks its inputs with ValueError

    def library_bug(argv):
        raise ValueError("a bug in code outside the suite")

    assert run_command(suite_check, checks=(ValueError,)) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(ValueError, match="a bug"):
        run_command(library_bug, checks=(ValueError,))
    with pytest.raises(ValueError):
        run_command(suite_check)  # without checks a ValueError is a bug


@pytest.mark.slow
def test_the_console_script_runs_a_tool(tmp_path):
    """The installed ``ophora`` script (pip install -e .) writes the same world as python -m ophora.sim."""
    script = Path(sys.executable).with_name("ophora")
    if not script.is_file():
        pytest.skip(f"no console script at {script}: run pip install -c constraints.txt -e . --no-deps")
    env = {k: v for k, v in os.environ.items() if k != "OPHORA_DEBUG"}
    argv = ["--videos", "1", "--frames", "9", "--size", "64x64", "--quiet"]
    for folder, command in (("a", [str(script), "sim"]), ("b", [sys.executable, "-m", "ophora.sim"])):
        done = subprocess.run([*command, "--out", str(tmp_path / folder), *argv], capture_output=True, text=True,
                              timeout=240, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    clips = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.mp4"))
    assert clips and clips == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.mp4"))
    assert all((tmp_path / "a" / c).read_bytes() == (tmp_path / "b" / c).read_bytes() for c in clips)


def test_curate_takes_set_overrides_like_the_other_commands(capsys):
    assert launcher.main(["curate", "--print-config", "--set", "dynamics.max_cuts=1", "--workers", "3"]) == 0
    printed = capsys.readouterr().out
    assert "  max_cuts: 1\n" in printed and "  workers: 3\n" in printed
    assert launcher.main(["curate", "--print-config", "--set", "dynamcs.max_cuts=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dynamcs: unknown key") and "did you mean 'dynamics'" in err


@pytest.mark.parametrize("argv", [["weights", "fetch"], ["weights", "where"], ["rate", "init"], ["rate", "serve"],
                                  ["rate", "analyse"], ["rate", "export"]])
def test_subcommand_help_is_plain_text_with_defaults(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        launcher.main([*argv, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ophora {' '.join(argv)} ")
    assert "``" not in out and "(default: None)" not in out and "(default: False)" not in out
    flat = " ".join(out.split())
    if argv == ["rate", "analyse"]:
        assert "--bootstrap N bootstrap resamples (default: 2000)" in flat and "--seed N" in flat
        assert "--out DIR, --output DIR, -o DIR" in flat
    if argv == ["weights", "fetch"]:
        assert "--out DIR, --dest DIR, --output DIR, -o DIR" in flat and "--no-progress, --quiet, -q" in flat


def test_sanity_weights_and_rate_keep_their_old_flag_names():
    from benchmarks.rating.cli import build_parser
    from benchmarks.sanity.__main__ import overrides_of, parse_args

    old = parse_args(["--output", "o", "--no-progress", "--work", "w", "--set", "bootstrap=5", "--seed", "3"])
    new = parse_args(["-o", "o", "--quiet", "--cache", "w", "--set", "bootstrap=5", "--seed", "3"])
    assert old == new and str(old.out) == "o" and old.progress is False
    assert overrides_of(old) == {"bootstrap": 5, "work": "w", "seed": 3}
    assert overrides_of(parse_args(["--workers", "0"])) == {"workers": 0}
    rating = build_parser()
    assert str(rating.parse_args(["init", "demo", "--out", "s"]).out) == "s"
    assert str(rating.parse_args(["export", "f", "--output", "e"]).out) == "e"
    assert rating.parse_args(["analyse", "f"]).bootstrap == 2000


def test_sanity_refuses_a_flag_and_a_set_that_disagree(capsys):
    assert launcher.main(["sanity", "--seed", "3", "--set", "seed=4", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --seed 3 and --set seed=4 disagree (give one of them)\n"
    assert launcher.main(["sanity", "--set", "bootstrapp=5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bootstrapp: unknown key" in err and "did you mean 'bootstrap'?" in err
