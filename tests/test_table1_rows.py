"""Table 1's rows: what each says about where its videos come from (fast: configs only, no run)."""
from __future__ import annotations

from benchmarks.table1 import _detector_stamp, load_table1_config, render


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
