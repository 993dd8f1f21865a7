"""Table 1's rows: what each says about where its videos come from, the N every row is scored on and the
geometry every row is brought to (fast: configs only, no run)."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.table1 import _detector_stamp, _notes, load_table1_config, render
from benchmarks.table1.preflight import EqualNError, choose_n, preflight
from ophora.configs import ConfigError
from ophora.data.geometry import parse_geometry
from ophora.data.video import write_video


def test_every_row_says_where_its_videos_come_from_with_one_definition_across_configs():
    """A row's label means the same in every config: 'trained here' rows name preset, stages and data; released
    baselines say so (issue 16, item 4)."""
    origins = {name: {row.name: row.origin for row in load_table1_config(name).rows}
               for name in ("demo", "quick", "paper")}
    assert origins["demo"]["Endora"] == "trained here (tiny preset): the raw narrated set"
    assert origins["demo"]["Ophora"] == "trained here (tiny preset): TPT on Ophora-160K, then P2FT on Ophora-28K"
    assert origins["paper"]["Endora"].startswith("released videos (official code and checkpoint)")
    assert origins["paper"]["Bora (w/ Ophora-160K)"] == "trained here (paper preset): Ophora-160K"
    assert origins["paper"]["Ophora"].startswith("checkpoint runs/paper/p2ft/model")
    rows = render.table_rows([{"name": "Endora", "origin": origins["paper"]["Endora"], "metrics": {}}], ["fid"])
    table = render.table(rows, ["fid"])
    assert table.columns[-1].title == "videos from" and table.records[0]["origin"] == origins["paper"]["Endora"]


def test_the_metrics_figure_is_stamped_with_its_detectors():
    payload = {"detectors": {"fid": {"identifier": "random-init:fid-inception-v3:seed=0"},
                             "surgical_fvd": {"identifier": "ophsim-surgical:video:ophsim-surgical-video-v1"}}}
    assert _detector_stamp(payload) == ("detectors: fid: random-init:fid-inception-v3, "
                                        "surgical_fvd: ophsim-surgical:video")


def test_every_row_is_scored_on_one_n_and_a_row_with_fewer_is_refused_by_name():
    demo = load_table1_config("demo")
    assert choose_n(demo, {"Endora": 24, "Ophora": 30}, real=24)["n"] == 24
    with pytest.raises(EqualNError, match=r"scored on N=24 videos \(metrics.n\), but row 'Ophora' has N=20"):
        choose_n(demo, {"Endora": 24, "Ophora": 20}, real=24)
    with pytest.raises(EqualNError, match="the real set has N=23"):
        choose_n(demo, {"Endora": 24}, real=23)
    # the paper's rule: 2048 where the sets allow, else the largest N every row (and the real set) has
    paper = load_table1_config("paper")
    assert (paper.metrics.n, paper.metrics.n_fallback) == (2048, True)
    assert choose_n(paper, {"Endora": 5000, "Bora": 3000}, real=4096)["n"] == 2048
    record = choose_n(paper, {"Endora": 5000, "Bora": 1500}, real=4096)
    assert record["n"] == 1500 and record["requested"] == 2048 and record["rows"]["Bora"] == 1500
    assert choose_n(load_table1_config("demo", {"metrics.n": None}), {"Endora": 3}, real=24) is None


def test_preflight_refuses_an_external_row_with_fewer_videos_than_n(tmp_path):
    folder = tmp_path / "official"
    for i in range(3):
        write_video(folder / f"v{i}.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=8)
    config = load_table1_config("demo", {"metrics.n": 5, "rows": [{"name": "Endora (released)",
                                                                   "external": str(folder)}]})
    missing = [m for m in preflight(config) if "metrics.n" in m.asset]
    assert len(missing) == 1 and missing[0].asset == ("row 'Endora (released)': N=3 videos, fewer than the N=5 "
                                                      "every row is scored on (metrics.n)")
    assert missing[0].expected == str(folder)
    enough = load_table1_config("demo", {"metrics.n": 3, "rows": [{"name": "Endora (released)",
                                                                  "external": str(folder)}]})
    assert not [m for m in preflight(enough) if "metrics.n" in m.asset]


def test_the_paper_config_brings_every_row_to_one_named_geometry():
    paper = load_table1_config("paper")
    assert parse_geometry(paper.metrics.geometry).summary() == \
        "endora-128: 8 fps, 16 frames, 128x128 (short-side-crop, lanczos)"
    with pytest.raises(ConfigError, match=r"metrics.geometry: unknown geometry 'endora'.*endora-128"):
        load_table1_config("demo", {"metrics.geometry": "endora"})
    payload = {"real": {"videos": 24}, "prompts": {"n": 24, "videos_per_prompt": 1}, "protocols": {},
               "detectors": {}, "rows": [], "geometry": parse_geometry("endora-128").to_dict(),
               "equal_n": choose_n(paper, {"A": 100}, real=300)}
    notes = _notes(paper, payload)
    assert "geometry (every row and the real set, before the detectors): endora-128: 8 fps, 16 frames, 128x128 " \
           "(short-side-crop, lanczos)" in notes
    assert "equal N: every row and the real set scored on N = 100 videos drawn with seed 0 (the largest N every " \
           "row and the real set have, at most 2048)" in notes


def test_the_paper_config_scores_with_stylegan_v_protocols_and_preflight_asks_for_their_weights(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)
    paper = load_table1_config("paper")
    assert paper.metrics.protocols == {"fid": "fid/stylegan-v", "fvd": "fvd/stylegan-v"}
    detectors = {m.asset for m in preflight(paper) if "detector weights" in m.asset}
    assert detectors == {"fid detector weights (stylegan-v-inception)", "fvd detector weights (stylegan-v-i3d)",
                         "clipscore detector weights (open_clip:ViT-L-14/openai)"}
