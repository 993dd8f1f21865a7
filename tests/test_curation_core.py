"""Curation building blocks without videos: config, verdict versions, ledgers, the pipeline's bookkeeping, CLI."""
from __future__ import annotations

import json

import pytest
import yaml

from ophora.configs import ConfigError, build_config, load_config
from ophora.curation.cli import main
from ophora.curation.config import ChatConfig, CurationConfig, DynamicsConfig, plain
from ophora.curation.dynamics import DynamicsStage
from ophora.curation.executor import plan_shards
from ophora.curation.ledger import Ledger, last_run, ledger_path, read_ledgers, repair_ledger
from ophora.curation.pipeline import Pipeline
from ophora.curation.stage import ClipItem, Stage
from ophora.curation.templates import load_template


def test_config_from_yaml_with_nested_sections_and_tuples(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"resolution": {"min_width": 128},
                                    "privacy": {"overlay": {"watermark_box": [0.3, 0.5]}},
                                    "rewrite": {"backend": "openai", "openai": {"model": "m", "concurrency": 2}}}))
    config = load_config(CurationConfig, path)
    assert config.resolution.min_width == 128 and config.resolution.min_height == 480
    assert config.privacy.overlay.watermark_box == (0.3, 0.5)
    assert config.rewrite.openai.model == "m" and config.rewrite.openai.concurrency == 2
    assert load_config(CurationConfig, None) == CurationConfig()


@pytest.mark.parametrize("data, message", [
    ({"dynamic": {}}, "did you mean 'dynamics'"),
    ({"dynamics": {"treshold": 3}}, "did you mean 'threshold'"),
    ({"rewrite": {"backend": "open-ai"}}, "did you mean 'openai'"),
    ({"execution": {"workers": 0}}, "at least 1"),
    ({"dynamics": 3}, "dynamics: expected a mapping"),
])
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        build_config(CurationConfig, data)


def test_secrets_are_redacted_and_operational_knobs_do_not_change_versions():
    chat = ChatConfig(api_key="sk-secret")
    assert plain(chat)["api_key"] == "<redacted>" and "sk-secret" not in repr(chat)
    assert "api_key" not in plain(chat, digest=True) and "concurrency" not in plain(chat, digest=True)
    with_password = ChatConfig(base_url="https://user:pa55word@llm.example/v1")
    assert plain(with_password)["base_url"] == plain(with_password, digest=True)["base_url"] \
        == "https://user:<redacted>@llm.example/v1"
    base = DynamicsStage(DynamicsConfig())
    assert base.version == DynamicsStage(DynamicsConfig()).version
    assert base.version != DynamicsStage(DynamicsConfig(threshold=30.0)).version
    assert base.version.startswith("dynamics/v3+")


def test_ledger_ignores_and_repairs_a_torn_last_line(tmp_path):
    path = ledger_path(tmp_path, 3)
    with Ledger(path) as ledger:
        ledger.append({"clip_id": "a", "in_160k": True})
        ledger.append({"clip_id": "b", "in_160k": False})
    with open(path, "ab") as handle:  # what a kill -9 in the middle of a write can leave
        handle.write(b'{"clip_id": "c", "in_1')
    assert set(read_ledgers(tmp_path)) == {"a", "b"}
    with Ledger(path) as ledger:  # reopening repairs before appending
        ledger.append({"clip_id": "c", "in_160k": True})
    assert [json.loads(line)["clip_id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]
    assert repair_ledger(path) == 0 and path.name == "shard-00003.jsonl"


def test_ledger_keeps_the_first_record_of_a_clip(tmp_path):
    for shard, value in ((0, 1), (1, 2)):
        with Ledger(ledger_path(tmp_path, shard)) as ledger:
            ledger.append({"clip_id": "x", "value": value})
    assert read_ledgers(tmp_path)["x"]["value"] == 1


def test_ledger_keeps_the_record_of_the_latest_run_whatever_shard_holds_it(tmp_path):
    with Ledger(ledger_path(tmp_path, 1)) as ledger:
        ledger.append({"clip_id": "x", "run": 1, "failed": True})
        ledger.append({"clip_id": "y", "run": 3, "failed": False})
    with Ledger(ledger_path(tmp_path, 0)) as ledger:  # the clip moved to another shard when rows were inserted
        ledger.append({"clip_id": "x", "run": 2, "failed": False})
        ledger.append({"clip_id": "y", "run": 2, "failed": True})
    records = read_ledgers(tmp_path)
    assert (records["x"]["run"], records["y"]["run"]) == (2, 3) and last_run(records) == 3


def test_shards_are_stable_and_skip_finished_clips(tmp_path):
    items = [ClipItem(f"c{i}", "", tmp_path) for i in range(10)]
    shards = plan_shards(items, 4, done={"c0", "c1", "c2", "c3", "c5"})
    assert [s.index for s in shards] == [1, 2]
    assert [i.clip_id for i in shards[0].items] == ["c4", "c6", "c7"]


class _Flag(Stage):
    """Test stage: drops clips whose caption contains ``word``; raises on "boom"."""

    name = "flag"

    def __init__(self, word: str, gate: str = "160k"):
        super().__init__(DynamicsConfig())
        self.word, self.gate = word, gate

    def check(self, item):
        if "boom" in item.caption:
            raise RuntimeError("exploded")
        return self.verdict(self.word not in item.caption, f"has {self.word}" if self.word in item.caption else "ok")


def test_pipeline_records_every_verdict_first_drop_and_28k_gate(tmp_path):
    stages = [_Flag("cut"), _Flag("static"), _Flag("logo", gate="28k")]
    items = [ClipItem(i, caption, tmp_path) for i, caption in
             (("a", "fine"), ("b", "cut static"), ("c", "static"), ("d", "logo"), ("e", "boom"))]
    records = {r["clip_id"]: r for r in Pipeline(CurationConfig(), stages).run(items)}
    assert records["a"]["in_160k"] and records["a"]["in_28k"] and len(records["a"]["verdicts"]) == 3
    assert records["b"]["drop_reason"] == "has cut" and len(records["b"]["verdicts"]) == 1
    assert records["c"]["drop_reason"] == "has static" and len(records["c"]["verdicts"]) == 2
    assert records["d"]["in_160k"] and not records["d"]["in_28k"]
    assert records["e"]["verdicts"][0]["status"] == "error" and "exploded" in records["e"]["drop_reason"]


def test_templates_are_versioned_package_data():
    template = load_template("rewrite_v1")
    assert template.version == "rewrite-v1" and len(template.examples) >= 3
    messages = template.messages("Narration: x")
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": "Narration: x"}
    assert load_template("privacy_v1").version == "privacy-v1"
    with pytest.raises(FileNotFoundError, match="rewrite_v1"):
        load_template("nope")


def test_cli_prints_config_and_rejects_bad_config(tmp_path, capsys):
    assert main(["--print-config", "--workers", "3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["execution"]["workers"] == 3 and printed["resolution"]["min_width"] == 720
    bad = tmp_path / "bad.yaml"
    bad.write_text("resolutoin: {}\n")
    assert main(["--config", str(bad), "--input", "x", "--out", str(tmp_path)]) == 2
    assert "did you mean 'resolution'" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_an_empty_raw_set_gives_empty_sets_and_a_report(tmp_path):
    from ophora.curation.run import curate

    (tmp_path / "raw.csv").write_text("clip_id,caption,source_video,start,end,path\n")
    summary = curate(tmp_path / "raw.csv", tmp_path / "out", progress=False)
    assert summary["input"] == 0 and summary["in_160k"] == 0
    assert (tmp_path / "out" / "ophora_160k" / "instructions.csv").read_text().startswith("clip id,instruction")
    assert "| resolution | 0 | 0 | 0 | 0 |" in (tmp_path / "out" / "report.md").read_text()
