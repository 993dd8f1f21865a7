"""Table 1's optional "Beyond the paper" table (issue 21, item 5): the config's ``metrics.beyond``, the passes it
asks for, the second table's files from a results payload, its report section, and preflight's checkpoints (fast:
configs and hand-made results, no run; the quick run in tests/test_table1.py scores the shipped entries)."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.table1 import _columns, _notes, _row_record, _write_beyond, beyond, load_table1_config, render
from benchmarks.table1.config import MetricConfig
from benchmarks.table1.preflight import _beyond as beyond_preflight  # preflight()'s part for these columns
from benchmarks.table1.stages import RowResult
from ophora.configs import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _beyond(entries, **changes):
    return load_table1_config("quick", {"metrics.beyond": entries, **changes})


def test_beyond_is_off_by_default_and_the_shipped_configs_resolve():
    assert MetricConfig().beyond == ()
    quick = beyond.resolve_columns(load_table1_config("quick").metrics)
    assert [(c.key, c.title) for c in quick] == [
        ("fvmd_opencv_lk", "FVMD (LK tracker)"), ("kvmd", "KVMD (LK tracker)"),
        ("kvd_on_fvd_ophsim_surgical", "KVD (surgical)"), ("fvd_videomae", "cd-FVD (VideoMAE)"),
        ("jedi_v_jepa2", "JEDi (V-JEPA 2)")]
    assert quick[2].assign == (("fvd", "fvd/ophsim-surgical"), ("kvd", "kvd")) and quick[2].weights == ()
    assert quick[3].weights == (("fvd", "random-init"),) and quick[3].tiny is True
    paper = {c.key: c for c in beyond.resolve_columns(load_table1_config("paper").metrics)}
    # kvd on the published FVD: the FVD column's protocol and detector (pretrained I3D, not tiny)
    assert paper["kvd_on_fvd_stylegan_v"].assign == (("fvd", "fvd/stylegan-v"), ("kvd", "kvd"))
    assert paper["kvd_on_fvd_stylegan_v"].weights == (("fvd", "pretrained"),)
    assert paper["kvd_on_fvd_stylegan_v"].tiny is False
    assert paper["jedi_v_jepa2"].weights[0][1].endswith("vjepa2-vitl-fpc16-256-ssv2/model.safetensors")


@pytest.mark.parametrize("entries, match", [
    (["fvmdd"], r"metrics\.beyond\[0\]\.protocol: unknown protocol 'fvmdd'.*did you mean 'fvmd'"),
    (["fvmd", "fid"], r"metrics\.beyond\[1\]\.protocol: 'fid/pytorch-fid' is a protocol of the paper's columns"),
    (["fvd/stylegan-v"], r"metrics\.beyond\[0\]\.protocol: 'fvd/stylegan-v' is a protocol of the paper's columns"),
    ([{"protocol": "fvmd", "features": "fvd/videomae"}], r"metrics\.beyond\[0\]\.features: only kvd columns"),
    ([{"protocol": "kvd", "features": "fvd/surgical"}],
     r"metrics\.beyond\[0\]\.features: 'fvd/surgical' is not an FVD protocol.*did you mean 'fvd/ophsim-surgical'"),
    ([{"protocol": "fvmd", "weights": "random-init"}], r"metrics\.beyond\[0\]\.weights: .*tracker has no weights"),
    ([{"protocol": "kvd", "weights": "tiny"}], r"metrics\.beyond\[0\]\.weights: .*the FVD column's"),
    ([{"protocol": "kvd", "features": "fvd/ophsim-surgical", "weights": "x.pt"}],
     r"metrics\.beyond\[0\]\.weights: .*ship with the suite"),
    ([{"protocol": "jedi", "weights": "pretrained"}], r"metrics\.beyond\[0\]\.weights: 'pretrained': the weights "
                                                      r"registry has no entry"),
    (["kvmd", "kvmd"], r"metrics\.beyond\[1\]: kvmd is listed twice"),
    ([{"protocol": "fvmd", "colour": 1}], r"metrics\.beyond\[0\]\.colour: unknown key"),
    ("fvmd", r"metrics\.beyond: expected a list of protocols"),
])
def test_a_wrong_beyond_entry_is_refused_naming_its_key(entries, match):
    with pytest.raises(ConfigError, match=match):
        _beyond(entries)


def test_columns_share_a_pass_where_their_detectors_agree():
    columns = beyond.resolve_columns(_beyond([
        "fvmd", "kvmd", {"protocol": "kvd", "features": "fvd/ophsim-surgical"}, {"protocol": "jedi", "weights": "tiny"},
        {"protocol": "fvd/videomae", "weights": "tiny"}, {"protocol": "kvd", "features": "fvd/videomae"},
        {"protocol": "kvd/jedi", "features": "fvd/videomae", "weights": "/ckpt/videomae.pth"},
        {"protocol": "kvd/jedi", "features": "fvd/ophsim-surgical"}]).metrics)
    passes = [[c.key for c in group] for group in beyond.plan_passes(columns)]
    assert passes == [
        ["fvmd_opencv_lk", "kvmd", "kvd_on_fvd_ophsim_surgical", "jedi_v_jepa2"],
        # kvd on the tiny VideoMAE joins cd-FVD's pass (same detector; the quick config's tiny_i3d default)
        ["fvd_videomae", "kvd_on_fvd_videomae"],
        ["kvd_jedi_on_fvd_videomae"],  # another checkpoint of the same detector: its own pass
        ["kvd_jedi_on_fvd_ophsim_surgical"],  # kvd under another protocol on the same features: its own pass
    ]
    options = [beyond.pass_options(group) for group in beyond.plan_passes(columns)]
    assert options[0]["metrics"] == ("fvmd", "kvmd", "kvd", "jedi") and options[0]["tiny_i3d"] is True
    assert dict(options[0]["protocols"]) == {"fvd": "fvd/ophsim-surgical", "fvmd": "fvmd/opencv-lk",
                                             "jedi": "jedi/v-jepa2", "kvd": "kvd", "kvmd": "kvmd"}
    assert options[2] == {"metrics": ("kvd",), "protocols": (("fvd", "fvd/videomae"), ("kvd", "kvd/jedi")),
                          "detector_weights": (), "custom_detectors": (("fvd", "/ckpt/videomae.pth"),),
                          "tiny_i3d": False, "fd_infinity": 0}


def _metric(value, low, high, n=6, protocol="p", **extra):
    return {"value": value, "ci": {"low": low, "high": high}, "n_real": n, "n_fake": n,
            "protocol": {"name": protocol}, "detector": {"identifier": "x"}, **extra}


DETECTORS = {"fvmd_opencv_lk": {"identifier": "opencv-lk:opencv=4.10.0", "comparable_with_literature": False},
             "kvmd": {"identifier": "opencv-lk:opencv=4.10.0", "comparable_with_literature": False},
             "kvd_on_fvd_ophsim_surgical": {"identifier": "ophsim-surgical:video:v1",
                                            "comparable_with_literature": False},
             "fvd_videomae": {"identifier": "random-init:videomae-tiny:seed=0", "comparable_with_literature": False},
             "jedi_v_jepa2": {"identifier": "random-init:vjepa2-tiny:seed=0", "comparable_with_literature": False}}


def _payload(tmp_path):
    """A results payload of two rows as ``run_table1`` builds it, with the quick config's beyond columns."""
    config = load_table1_config("quick")
    columns = beyond.resolve_columns(config.metrics)
    values = {"A": [1200.0, 3.5, 0.25, 14.0, 2.0], "B": [800.0, -0.5, 0.5, 12.0, 3.0]}
    results = []
    for name, numbers in values.items():
        result = RowResult(config.rows[0], str(tmp_path / name), conditional=False)
        result.evaluation = {"metrics": {"fvd": _metric(20.0 + len(name), 18.0, 23.0, protocol="fvd/stylegan-v")},
                             "per_video": {}, "failed": [], "inputs": {}}
        metrics = {c.key: _metric(v, v - 1, v + 1, protocol=c.protocol) for c, v in zip(columns, numbers)}
        metrics["fvmd_opencv_lk"]["warnings"] = ["24 windows < 1024 dims: rank-deficient covariances; the "
                                                 "package's eps-regularised value"]
        result.beyond = {"metrics": metrics, "detectors": DETECTORS, "failed": [], "passes": [{"columns": []}]}
        results.append(result)
    rows = [_row_record(r) for r in results]
    for row, name in zip(rows, values):
        row["name"] = name
    summary = beyond.summary(columns, [r.beyond for r in results], len(beyond.plan_passes(columns)))
    return config, {"rows": rows, "beyond": summary}


@pytest.mark.slow  # a chart (matplotlib) and a report page
def test_the_second_table_holds_each_column_with_its_interval_and_notes(tmp_path):
    config, payload = _payload(tmp_path)
    assert "detector" not in payload["rows"][0]["beyond"]["metrics"]["kvmd"]  # once, at the top
    assert payload["beyond"]["protocols"]["fvd_videomae"] == {"name": "fvd/videomae"}
    assert payload["beyond"]["passes"] == 2 and payload["beyond"]["comparable_with_literature"] is False
    extra = _write_beyond(config, tmp_path, payload)
    md = (tmp_path / "table_beyond.md").read_text()
    assert md.startswith("# Beyond the paper (quick)\n")
    assert ("| model | FVMD (LK tracker) ↓ | KVMD (LK tracker) ↓ | KVD (surgical) ↓ | cd-FVD (VideoMAE) ↓ | "
            "JEDi (V-JEPA 2) ↓ | videos from |") in md
    assert "| A | 1200.00 [1199.00, 1201.00] | 3.50 [2.50, 4.50] | **0.25** [-0.75, 1.25] |" in md
    assert "| B | **800.00** [799.00, 801.00] | **-0.50** [-1.50, 0.50] | 0.50 [-0.50, 1.50] |" in md
    notes = md.split("\n\n", 2)[2]
    assert "weight-free tracker in place of the package's PIPs++, so not comparable with published FVMD" in notes
    assert "KVD (surgical): KVD: KID's unbiased polynomial-kernel MMD^2" in notes and \
        "the clip features of fvd/ophsim-surgical" in notes and "surgical video classifier" in notes
    assert "cd-FVD (VideoMAE): content-debiased FVD" in notes and \
        "a tiny (2 blocks, 64-d) random-init stand-in (random-init:videomae-tiny:seed=0): ranks nothing" in notes
    assert "standing in for JEDi's V-JEPA ViT-H/16: not comparable with published JEDi" in notes
    assert "2 more pass(es) over each row's videos" in notes
    assert ("FVMD (LK tracker): 2 warning(s) over the rows (each row's in results.json), e.g. 24 windows < 1024 "
            "dims\n") in notes
    with open(tmp_path / "table_beyond.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["model"] for line in lines] == ["A", "B"]
    assert float(lines[1]["kvmd"]) == -0.5 and float(lines[1]["kvmd_low"]) == -1.5 and lines[1]["kvmd_n"] == "6"
    tex = (tmp_path / "table_beyond.tex").read_text()
    assert r"\caption{Beyond the paper (quick)" in tex and r"\textbf{800.00}" in tex and tex.count(r"\\") == 3
    assert (tmp_path / "metrics_beyond.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the report: the second table as its own section, its protocols and detectors, its N
    html = report.write_report(tmp_path, table=render.table([], ["fvd"]), payload=payload, figures=(),
                               tables=extra).read_text()
    assert '<section id="beyond"><h2>Beyond the paper</h2>' in html
    assert html.index('id="table"') < html.index('id="beyond"') < html.index('id="protocols"')
    assert "Beyond the paper: protocols and detectors" in html and "random-init:vjepa2-tiny:seed=0" in html
    assert "Videos behind each beyond-the-paper value" in html and "<b>800.00</b>" in html


def test_the_paper_table_is_unchanged_byte_for_byte(tmp_path):
    """The committed demo's table.md, rewritten from its results.json by today's code: identical bytes (the beyond
    table leaves Table 1's files as they were); a row without beyond columns records no beyond key."""
    folder = REPO / "results" / "table1" / "demo"
    payload = json.loads((folder / "results.json").read_text())
    config = load_table1_config("demo")
    metrics = _columns(config)
    rows = render.table_rows(payload["rows"], metrics)
    written = render.write_markdown(tmp_path / "table.md", rows, metrics, _notes(config, payload))
    assert written.read_bytes() == (folder / "table.md").read_bytes()
    _, with_beyond = _payload(tmp_path)
    plain = [{k: v for k, v in r.items() if k != "beyond"} for r in with_beyond["rows"]]
    assert render.table_rows(with_beyond["rows"], ["fvd"]) == render.table_rows(plain, ["fvd"])
    result = RowResult(config.rows[0], "videos", conditional=False)
    result.evaluation = {"metrics": {}, "inputs": {}}
    assert "beyond" not in _row_record(result)


def test_preflight_names_the_checkpoints_of_the_paper_configs_beyond_columns(tmp_path, monkeypatch):
    module = sys.modules["benchmarks.table1.preflight"]
    monkeypatch.setattr(module, "_rows", lambda config: [])  # the rows' checks import every baseline (slow)
    assert [m.asset for m in module.preflight(load_table1_config("paper"))][-2:] == [
        m.asset for m in beyond_preflight(load_table1_config("paper"))]
    paper = load_table1_config("paper")
    missing = {m.asset: m for m in beyond_preflight(paper)}
    videomae = missing["beyond-the-paper column 'cd-FVD (VideoMAE)' (fvd/videomae): checkpoint of its fvd detector "
                       "(metrics.beyond[3].weights)"]
    assert videomae.expected == "/data/ophora/weights/vit_g_hybrid_pt_1200e_ssv2_ft.pth"
    assert "huggingface.co/OpenGVLab/InternVideoMAE_models" in videomae.how
    jedi = missing["beyond-the-paper column 'JEDi (V-JEPA 2)' (jedi/v-jepa2): checkpoint of its jedi detector "
                   "(metrics.beyond[4].weights)"]
    assert "facebook/vjepa2-vitl-fpc16-256-ssv2" in jedi.how and len(missing) == 2
    # present files are not listed; V-JEPA 2 needs the config.json of its transformers folder beside the weights
    (tmp_path / "vjepa").mkdir()
    (tmp_path / "vjepa" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "videomae.pth").write_bytes(b"x")
    given = load_table1_config("quick", {"metrics.beyond": [
        {"protocol": "fvd/videomae", "weights": str(tmp_path / "videomae.pth")},
        {"protocol": "jedi", "weights": str(tmp_path / "vjepa" / "model.safetensors")}]})
    left = beyond_preflight(given)
    assert [m.expected for m in left] == [str(tmp_path / "vjepa" / "config.json")]
