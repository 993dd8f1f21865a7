"""``report.html`` is one self-contained page: the table with intervals and the best value in bold, the figures,
the videos of each set side by side for the same prompt, protocols, N and provenance; opened in headless
Chromium, its images and videos load and the console stays clean (a screenshot is kept in the test's folder)."""
from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.report import media, video_rows, write_evaluation_report, write_report
from ophora.data.video import read_video
from ophora.results import write_json
from ophora.tables import Column, Table

from eval_sets import PROMPTS, make_folder, make_generated

PAYLOAD = {
    "comparable_with_literature": False,
    "protocols": {"fid": {"name": "fid/pytorch-fid", "version": "1", "detector": "inception", "dim": 2048}},
    "detectors": {"fid": {"identifier": "random-init:inception", "sha256": "ab" * 32,
                          "comparable_with_literature": False}},
    "rows": [{"name": "model A", "metrics": {"fid": {"n_real": 4, "n_fake": 3}}},
             {"name": "model B", "metrics": {"fid": {"n_real": 4, "n_fake": 2}}}],
}
TABLE = Table((Column("model", "model", align="l"),
               Column("fid", "FID", number=True, interval=("low", "high"), better="lower")),
              ({"model": "model A", "fid": 12.5, "low": 10.25, "high": 14.75},
               {"model": "model B", "fid": 3.0, "low": None, "high": None}),
              title="Table 1 (test)", notes=("values with 95% intervals",))


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A results folder (results.json, a chart PNG) and three video sets: generated with prompts (two
    models) and a plain real folder without prompts."""
    root = tmp_path_factory.mktemp("report")
    make_folder(root / "real", 3, 16, size=(48, 64), seed=0)
    make_generated(root / "model_a", 3, frames=12, seed=1, prompts=PROMPTS[:3])
    make_generated(root / "model_b", 2, frames=12, seed=2, prompts=PROMPTS[1:3])
    out = root / "results"
    write_json(out / "results.json", PAYLOAD, config={"name": "test"}, seed=7)
    Image.fromarray(np.full((40, 60, 3), (200, 30, 30), np.uint8)).save(out / "metrics.png")
    return root


def _sets(root):
    return [("Real", root / "real"), ("model A", root / "model_a"), ("model B", root / "model_b")]


def test_videos_are_matched_by_prompt_and_plain_sets_by_position(results_dir):
    rows = video_rows(_sets(results_dir) + [("gone", results_dir / "missing")], max_prompts=3, max_videos=3)
    assert [r.prompt for r in rows] == list(PROMPTS[:3])  # the first set with prompts gives the order
    first, second = rows[0].videos, rows[1].videos
    assert [v[0] for v in first] == ["Real", "model A", "model B"] and rows[0].left_out == ("gone",)
    assert first[0][1].name == "vid_00.mp4" and "(no prompts)" in first[0][2]  # the plain folder: by position
    assert first[2][1] is None and first[2][2] == "no video for this prompt"  # model B lacks PROMPTS[0]
    assert second[1][1].name == "vid_01.mp4" and second[2][1].name == "vid_00.mp4"  # B's first is PROMPTS[1]


def test_a_clip_keeps_the_frames_and_rate_of_its_video(results_dir, tmp_path):
    source = results_dir / "model_a" / "vid_00.mp4"
    shown = media.clip(source, size=32)
    assert (shown.frames, shown.height, shown.width, shown.fps) == (12, 32, 32, 8.0) and shown.shown_frames == 12
    assert shown.uri.startswith("data:video/webm;base64,")
    decoded = tmp_path / "clip.webm"
    decoded.write_bytes(base64.b64decode(shown.uri.split(",", 1)[1]))
    frames = read_video(decoded)
    assert frames.shape == (12, 32, 32, 3)
    original = read_video(source).astype(float)  # VP9 at crf 32: close to the source, not equal
    assert np.abs(frames.astype(float) - original).mean() < 12


def test_the_page_is_self_contained_and_says_what_made_it(results_dir):
    page = write_report(results_dir / "results", table=TABLE, video_sets=_sets(results_dir)).read_text()
    assert page.startswith("<!DOCTYPE html>") and "Table 1 (test)" in page
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []  # nothing to fetch: every source is inline
    assert "12.50 <span class=\"ci\">[10.25, 14.75]</span>" in page and "<b>3.00</b>" in page  # best FID in bold
    assert page.count("data:video/webm;base64,") == 3 * 3 - 1  # 3 prompts x 3 sets, one with no video
    assert page.count("data:image/png;base64,") == 1 and "metrics.png" in page
    assert "fid/pytorch-fid" in page and "random-init:inception" in page and "Not comparable" in page
    assert "4 / 3" in page and "4 / 2" in page  # N real / N generated per row
    commit = json.loads((results_dir / "results" / "results.json").read_text())["provenance"]["git_commit"]
    assert commit and commit in page


@pytest.mark.slow
def test_an_evaluation_result_gets_its_page(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    make_folder(tmp_path / "real", 3, 16, seed=0)
    make_generated(tmp_path / "fake", 3, frames=16, seed=1)
    out = tmp_path / "eval" / "result.json"
    evaluate(EvalConfig(str(tmp_path / "real"), str(tmp_path / "fake"), metrics=("fid",),
                        protocols=(("fid", "fid/ophsim-surgical"),), bootstrap=10, workers=0, progress=False,
                        no_cache=True, out=str(out)))
    page = write_evaluation_report(out).read_text()
    value = json.loads(out.read_text())["metrics"]["fid"]["value"]
    assert f"{value:.4f}" in page and "fid/ophsim-surgical" in page
    assert page.count("data:video/webm;base64,") == 3 * 2  # real and generated, side by side, 3 prompts
    from benchmarks.report.__main__ import main
    from ophora.cli import run_command

    assert main([str(out), "--out", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").read_text().count("data:video/webm;base64,") == 6
    assert run_command(main, [str(tmp_path / "missing.json")]) == 2


def _driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,1800", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=options, service=Service(driver, log_output=str(tmp_path / "chromedriver.log")))


@pytest.mark.slow
def test_chromium_renders_the_table_the_figures_and_plays_the_videos(results_dir, tmp_path):
    report = write_report(results_dir / "results", table=TABLE, video_sets=_sets(results_dir))
    browser = _driver(tmp_path)
    try:
        browser.get(report.as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 30).until(lambda b: b.execute_script(
            "return [...document.querySelectorAll('video')].every(v => v.readyState >= 2 || v.error)"))
        videos = browser.execute_script("return [...document.querySelectorAll('video')].map(v => "
                                        "[v.readyState, v.error && v.error.code, v.videoWidth, v.duration])")
        images = browser.execute_script("return [...document.images].map(i => [i.complete, i.naturalWidth])")
        cells = browser.execute_script("return [...document.querySelectorAll('table.results td')]"
                                       ".map(td => td.innerText)")
        browser.save_screenshot(str(tmp_path / "report.png"))
        console = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        browser.quit()
    assert len(videos) == 8 and all(state >= 2 and error is None and width > 0 and duration > 1
                                    for state, error, width, duration in videos), videos
    assert images == [[True, 60]]
    assert cells == ["model A", "12.50 [10.25, 14.75]", "model B", "3.00"]
    assert console == []
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("RGB"))
    assert shot.shape[1] == 1300 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # not a blank page


@pytest.mark.slow
def test_table_1_and_table_2_write_their_report_beside_their_table(results_dir, tmp_path):
    from benchmarks.table1 import render as table1
    from downstream import table2
    from downstream.table2.render import render as render_table2
    from downstream.table2.render import table_frame

    rows = table1.table_rows([{"name": "model A", "metrics": {"fid": {"value": 2.5, "n_fake": 3,
                                                                     "ci": {"low": 2.0, "high": 3.25}}}}], ["fid"])
    out = tmp_path / "table1"
    write_json(out / "results.json", PAYLOAD, config={"name": "t1"}, seed=0)
    html = table1.write_report(out, rows, ["fid"], ["a note"], [("Real (held-out)", results_dir / "real"),
                                                                 ("model A", results_dir / "model_a")], "Table 1 (t)")
    page = html.read_text()
    assert html == out / "report.html" and "<b>2.50</b> <span class=\"ci\">[2.00, 3.25]</span>" in page
    assert page.count("data:video/webm;base64,") == 2 * 3 and "a note" in page

    config = table2.load_config("demo", [])
    cell = {"classifier": "SlowFast (tiny)", "row": "source only", "task": "phase", "split": "val", "metric": "top1",
            "n": 1, "mean": 41.5, "std": None, "ci95_clips": [27.0, 56.25]}
    frame = table_frame({"statistics": {"cells": [cell]}, "cells": []}, config)
    paths = render_table2(frame, config, tmp_path / "table2")
    page = paths["html"].read_text()
    assert paths["html"] == tmp_path / "table2" / "report.html"
    assert "41.50 <span class=\"ci\">[27.00, 56.25]</span>" in page and "Table 2 (demo)" in page
    assert "git commit" in page and config.description.strip()[:40] in page
