"""The rating study through its HTTP interface and its commands: set-up, blinding, security, revisions,
resume, export and analysis (in-process client; the browser and load tests are in test_rating_browser.py and
test_rating_load.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from benchmarks.rating import db
from benchmarks.rating.app import create_app
from benchmarks.rating.cli import ERRORS, main
from benchmarks.rating.config import load_study
from benchmarks.rating.design import Item, balance_report, plan_raters
from benchmarks.rating.study import init_study, issue_link, open_study, revoke_rater
from benchmarks.rating.synthetic import write_synthetic_study
from ophora.cli import run_command
from ophora.configs.loader import ConfigError

BASE = "http://127.0.0.1:8000"
SETS = ("alpha_model", "beta_model", "real_clips")
LEAKS = SETS + ("clips", "instructions", "x264", "Lavf", "Lavc", "manifest")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rating")
    config = load_study(str(write_synthetic_study(folder / "source", raters=("r1", "r2", "r3"))))
    tokens = init_study(config, folder / "study", log=lambda line: None)
    return open_study(folder / "study"), tokens, config


def client(study, token: str | None = None) -> TestClient:
    browser = TestClient(create_app(study[0]), base_url=BASE)
    if token is not None:
        assert browser.get(f"/r/{token}", follow_redirects=False).status_code == 303
    return browser


def form_of(html: str) -> tuple[str, str]:
    return (re.search(r'name="csrf" value="([^"]+)"', html).group(1),
            re.search(r'action="/item/([^"]+)"', html).group(1))


def scores(config, value: int = 4, **changes) -> dict[str, str]:
    data = {f"score_{c.key}": str(value) for c in config.criteria}
    data.update({f"score_{k}": v for k, v in changes.items()})
    return data


def stored(study) -> int:
    with db.sessions(study.engine)() as session:
        return session.scalar(select(func.count(db.Rating.id)))


def test_a_study_names_the_key_that_is_wrong(tmp_path):
    path = write_synthetic_study(tmp_path)
    with pytest.raises(ConfigError, match=r"rater\b.*unknown key.*did you mean 'raters'"):
        load_study(str(path), {"rater": []})
    with pytest.raises(ConfigError, match=r"sets\[0\]\.videos: .*exactly one of 'table1'"):
        load_study(str(path), {"sets.0.table1": "x/results.json"})
    with pytest.raises(ConfigError, match=r"sets\[1\]\.row: set 'Bora': .* has no row 'Nope'"):
        init_study(load_study("demo", {"sets.1.row": "Nope"}), tmp_path / "bad", log=lambda line: None)
    with pytest.raises(ConfigError, match="not both"):
        load_study(str(path), {"phases": ["incision"]})
    with pytest.raises(ConfigError, match=r"shared: expected 0 to per_set_per_phase \(1\), got 2"):
        load_study(str(path), {"per_set_per_phase": 1, "shared": 2})
    with pytest.raises(ConfigError, match=r"scale: expected \[low, high\]"):
        load_study(str(path), {"scale": [5, 1]})
    assert [c.key for c in load_study("demo").criteria] == [
        "visual_realism", "anatomical_fidelity", "instrument_realism", "instruction_alignment",
        "temporal_consistency", "phase_correctness", "clinical_plausibility"]


def test_the_design_is_balanced_per_set_and_phase_and_repeats_come_later():
    items = [Item(10 * s + v, s, f"p{v % 3}") for s in range(4) for v in range(9)]  # 3 videos per set and phase
    plans = plan_raters(items, raters=5, per_group=2, repeats=2, seed=1)
    assert plans == plan_raters(items, raters=5, per_group=2, repeats=2, seed=1)
    assert all(counts == [2] * 5 for counts in balance_report(items, plans).values())
    for slots in plans:
        assert len(slots) == 4 * 3 * 2 + 2
        repeats = [(i, s) for i, s in enumerate(slots) if s.repeat_of is not None]
        assert len(repeats) == 2
        for position, slot in repeats:
            assert slots[slot.repeat_of].video == slot.video and position - slot.repeat_of >= 6
        firsts = [s.video for s in slots if s.repeat_of is None]
        assert len(set(firsts)) == len(firsts)
        first_round = {items[[i.video for i in items].index(v)].set_id for v in firsts[:4]}
        assert first_round == {0, 1, 2, 3}  # each round shows every set once
    seen = {}
    for slots in plans:
        for slot in slots:
            if slot.repeat_of is None:
                seen[slot.video] = seen.get(slot.video, 0) + 1
    assert sorted(set(seen.values())) == [3, 4] and sum(seen.values()) == 5 * 24  # coverage as even as it can be
    shared = plan_raters(items, raters=5, per_group=2, repeats=0, seed=1, shared=1)
    common = set.intersection(*({s.video for s in slots} for slots in shared))
    assert len(common) == 4 * 3 and all(len(slots) == 24 for slots in shared)  # one per set and phase for all
    others = [s.video for slots in shared for s in slots if s.video not in common]
    assert len(others) == 5 * 12 and max(others.count(v) for v in others) - min(others.count(v) for v in others) <= 1


def test_the_migrations_build_the_schema_of_the_models(study):
    with study[0].engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == "0001"
        assert compare_metadata(context, db.Base.metadata) == []


def test_init_stores_hashes_not_tokens_and_blinds_every_video(study):
    open_, tokens, config = study
    with db.sessions(open_.engine)() as session:
        raters = session.scalars(select(db.Rater)).all()
        assert {r.key for r in raters} == {"r1", "r2", "r3"}
        assert all(len(r.token_hash) == 64 and r.token_hash not in tokens.values() for r in raters)
        assert session.scalar(select(func.count(db.Video.id))) == 12
        per_rater = session.execute(select(db.Assignment.rater_id, func.count()).group_by(db.Assignment.rater_id))
        assert sorted(n for _, n in per_rater) == [13, 13, 13]  # 12 videos and one repeat each
    text = (open_.folder / "study.json").read_text() + (open_.folder / "study.sqlite").read_bytes().hex()
    assert not any(token in text or token.encode().hex() in text for token in tokens.values())
    media = sorted(open_.media.iterdir())
    assert len(media) == 12 and all(re.fullmatch(r"[0-9a-f]{64}\.mp4", p.name) for p in media)


def test_pages_urls_and_video_bytes_name_no_set_file_or_encoder(study):
    open_, tokens, config = study
    browser = client(study, tokens["r1"])
    seen_ids = []
    for _ in range(13):
        page = browser.get("/rate")
        html = page.text
        csrf, public_id = form_of(html)
        seen_ids.append(public_id)
        video = browser.get(f"/video/{public_id}")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert "etag" not in video.headers and "last-modified" not in video.headers
        for leak in LEAKS:
            assert leak not in html and leak not in str(page.url)
            assert leak.encode() not in video.content
        assert browser.post(f"/item/{public_id}", data={"csrf": csrf, **scores(config)},
                            follow_redirects=False).status_code == 303
    assert browser.get("/rate", follow_redirects=False).headers["location"] == "/finish"
    other = client(study, tokens["r2"])
    other_ids = {form_of(other.get("/rate").text)[1]}
    assert len(set(seen_ids)) == 13 and not other_ids & set(seen_ids)


def test_a_rater_sees_only_their_own_assignments(study):
    open_, tokens, config = study
    first, second, nobody = client(study, tokens["r2"]), client(study, tokens["r3"]), client(study)
    csrf, public_id = form_of(first.get("/rate").text)
    own_csrf, _ = form_of(second.get("/rate").text)
    before = stored(open_)
    for browser in (second, nobody):
        assert browser.get(f"/item/{public_id}").status_code == 404
        assert browser.get(f"/video/{public_id}").status_code == 404
        for token in (csrf, own_csrf):
            assert browser.post(f"/item/{public_id}", data={"csrf": token, **scores(config)}).status_code == 404
    assert nobody.get("/rate").status_code == 404 and nobody.get("/finish").status_code == 404
    assert nobody.get("/r/not-a-token").status_code == 404
    assert stored(open_) == before


def test_posts_need_the_csrf_token_a_same_origin_and_valid_input(study):
    open_, tokens, config = study
    browser = client(study, tokens["r3"])
    csrf, public_id = form_of(browser.get("/rate").text)
    before = stored(open_)
    assert browser.post(f"/item/{public_id}", data=scores(config)).status_code == 403
    assert browser.post(f"/item/{public_id}", data={"csrf": "0" * 64, **scores(config)}).status_code == 403
    assert browser.post(f"/item/{public_id}", data={"csrf": csrf, **scores(config)},
                        headers={"Origin": "http://evil.example"}).status_code == 403
    bad = browser.post(f"/item/{public_id}", data={"csrf": csrf, **scores(config, visual_realism="6")})
    assert bad.status_code == 422 and "from 1 to 5" in bad.text
    missing = {k: v for k, v in scores(config).items() if k != "score_phase_correctness"}
    assert browser.post(f"/item/{public_id}", data={"csrf": csrf, **missing}).status_code == 422
    long = browser.post(f"/item/{public_id}", data={"csrf": csrf, "comment": "x" * 2001, **scores(config)})
    assert long.status_code == 422 and "at most 2000" in long.text
    assert browser.post(f"/item/{public_id}", content=b"csrf=" + b"x" * 70000,
                        headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
    assert stored(open_) == before
    assert browser.post(f"/item/{public_id}", data={"csrf": csrf, **scores(config)},
                        follow_redirects=False).status_code == 303
    assert stored(open_) == before + 1


def test_revisions_are_kept_and_resume_goes_to_the_first_unrated_video(study):
    open_, tokens, config = study
    browser = client(study, tokens["r2"])
    first_csrf, first = form_of(browser.get("/rate").text)
    browser.post(f"/item/{first}", data={"csrf": first_csrf, "comment": "first look", **scores(config, 2)})
    second_csrf, second = form_of(browser.get("/rate").text)
    assert second != first
    page = browser.get(f"/item/{first}").text
    assert "revision 1" in page and "first look" in page
    browser.post(f"/item/{first}", data={"csrf": first_csrf, "comment": "changed my mind", **scores(config, 5)})
    fresh = client(study, tokens["r2"])  # another browser, as after a closed tab
    assert form_of(fresh.get("/rate").text)[1] == second
    with db.sessions(open_.engine)() as session:
        revisions = session.scalars(select(db.Rating).join(db.Assignment).where(db.Assignment.public_id == first)
                                    .order_by(db.Rating.revision)).all()
        assert [(r.revision, r.comment, {s.value for s in r.scores}) for r in revisions] == [
            (1, "first look", {2}), (2, "changed my mind", {5})]


def test_revoked_and_reissued_links(study):
    open_, tokens, config = study
    browser = client(study, tokens["r3"])
    assert browser.get("/rate").status_code == 200
    revoke_rater(open_, "r3")
    assert browser.get("/rate").status_code == 404
    assert browser.get(f"/r/{tokens['r3']}").status_code == 404
    new = issue_link(open_, "r3")
    assert client(study).get(f"/r/{tokens['r3']}").status_code == 404
    assert client(study, new).get("/rate").status_code == 200
    tokens["r3"] = new


def rate_all(study, rater: str, value: int = 4) -> None:
    browser = client(study, study[1][rater])
    while (page := browser.get("/rate")).url.path != "/finish":
        csrf, public_id = form_of(page.text)
        browser.post(f"/item/{public_id}", data={"csrf": csrf, **scores(study[2], value)})


@pytest.mark.slow
def test_export_and_analyse_commands(study, capsys):
    open_, tokens, config = study
    folder = open_.folder
    rate_all(study, "r1", 4)
    rate_all(study, "r2", 3)
    with db.sessions(open_.engine)() as session:
        extra = session.scalar(select(func.count(db.Rating.id))) - session.scalar(
            select(func.count(func.distinct(db.Rating.assignment_id))))
    assert main(["export", str(folder)]) == 0
    ratings = pd.read_csv(folder / "export" / "ratings.csv")
    revisions = pd.read_csv(folder / "export" / "revisions.csv")
    assert len(revisions) == len(ratings) + 7 * extra
    assert len(ratings[ratings["rater"].isin(["r1", "r2"])]) == 2 * 13 * 7
    assert set(ratings["set"]) == set(SETS) and len(ratings) % 7 == 0
    assert (ratings[ratings["check"] == "repeat"]["repeat_of"] >= 0).all()
    assert main(["analyse", str(folder), "--bootstrap", "50"]) == 0
    analysis = folder / "analysis"
    assert {p.name for p in analysis.iterdir()} >= {"summary.csv", "phases.csv", "phase_criteria.csv",
                                                     "agreement.csv", "checks.csv", "table.md", "fig3a.png",
                                                     "fig3b.png", "analysis.json"}
    assert len(pd.read_csv(analysis / "phase_criteria.csv")) == 3 * 2 * 7  # sets x phases x criteria
    phases = pd.read_csv(analysis / "phases.csv")
    assert set(phases["phase"]) == {"incision", "phacoemulsification"}
    assert json.loads((analysis / "analysis.json").read_text())["raters"] >= 1
    assert run_command(main, ["init", str(folder / "../source/study.yaml"), "--out", str(folder)], ERRORS) != 0
    assert "set up already" in capsys.readouterr().err


def test_analyse_without_ratings_says_so(tmp_path, capsys):
    config = load_study(str(write_synthetic_study(tmp_path / "source", sets=("only",), real=None, per_phase=1)))
    init_study(config, tmp_path / "study", log=lambda line: None)
    assert run_command(main, ["analyse", str(tmp_path / "study")], ERRORS) != 0
    assert "no ratings to analyse yet" in capsys.readouterr().err


def test_serve_binds_loopback_by_default():
    from benchmarks.rating.cli import build_parser

    args = build_parser().parse_args(["serve", "somewhere"])
    assert args.host == "127.0.0.1" and args.port == 8000 and not args.behind_tls


def test_the_demo_study_reads_the_table1_demo(tmp_path):
    if not Path("results/table1/demo/results.json").is_file() or not Path("runs/table1/demo/generate").is_dir():
        pytest.skip("no Table 1 demo videos here (python -m benchmarks.table1 makes them under runs/table1/demo)")
    from benchmarks.rating.study import resolve_set

    config = load_study("demo")
    for spec in config.sets:
        videos = resolve_set(spec, config.phase_pattern, config.phases)
        phases = pd.Series([v.phase for v in videos]).value_counts()
        assert len(phases) == 12 and (phases == 2).all(), spec.name
