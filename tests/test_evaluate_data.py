"""The evaluation data path: video sets, the decoding Dataset and its collate, float16 row storage, sharding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.features import RowStore, VideoViews, collate, make_loader, shard_positions
from benchmarks.metrics.clipscore import ClipScoreProtocol
from benchmarks.metrics.fid import FIDProtocol
from benchmarks.metrics.fvd import FVDProtocol
from ophora.data.manifests import InstructionClip, write_instruction_set
from ophora.data.sets import load_video_set
from ophora.data.video import Consecutive, Uniform, read_video

from eval_sets import PROMPTS, make_folder, make_generated


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    make_folder(root / "real" / "sub", 2, [20, 10], seed=0)
    make_folder(root / "real", 1, 18, seed=3)
    make_generated(root / "fake", 3, 16, seed=1)
    clips = [InstructionClip(f"c{i}", PROMPTS[i], root / "ins" / "clips" / f"c{i}.mp4") for i in range(2)]
    make_folder(root / "tmp", 2, 16, seed=2)
    for i, clip in enumerate(clips):
        clip.path.parent.mkdir(parents=True, exist_ok=True)
        (root / "tmp" / f"vid_{i:02d}.mp4").rename(clip.path)
    write_instruction_set(root / "ins" / "set.csv", clips)
    return root


def test_video_sets_resolve_every_layout(sets):
    folder = load_video_set(sets / "real")
    assert folder.kind == "folder"
    assert [i.key for i in folder.items] == ["sub/vid_00.mp4", "sub/vid_01.mp4", "vid_00.mp4"]
    assert not folder.has_prompts and folder.manifest is None
    generated = load_video_set(sets / "fake")
    assert generated.kind == "generated" and generated.has_prompts and generated.manifest.name == "manifest.jsonl"
    assert load_video_set(sets / "fake" / "manifest.jsonl").items == generated.items
    instructions = load_video_set(sets / "ins" / "set.csv")
    assert instructions.kind == "instructions"
    assert [i.key for i in instructions.items] == ["clips/c0.mp4", "clips/c1.mp4"]
    assert instructions.items[1].prompt == PROMPTS[1]
    empty = sets / "ins" / "empty-folder"
    empty.mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match="no videos"):
        load_video_set(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_video_set(sets / "missing")


def test_dataset_decodes_once_and_prepares_each_view(sets, monkeypatch):
    real = load_video_set(sets / "real")
    views = {"fid": FIDProtocol(frames_per_video=2), "fvd": FVDProtocol(),
             "clipscore": ClipScoreProtocol(frames_per_video=3)}
    calls = []
    import benchmarks.features.loader as loader

    def counting_read(path, select=None, **kw):
        calls.append(path)
        return read_video(path, select=select, **kw)

    monkeypatch.setattr(loader, "read_video", counting_read)
    item = VideoViews(real.items, views, "real", seed=4)[0]  # sub/vid_00.mp4, 20 frames
    assert len(calls) == 1 and item["errors"] == {} and item["index"] == 0
    offset = FVDProtocol().frame_indices(20, "real", 4, "sub/vid_00.mp4")[0]
    expected = read_video(real.items[0].path, select=Consecutive(16, int(offset)))
    assert torch.equal(item["inputs"]["fvd"], torch.from_numpy(expected).permute(3, 0, 1, 2))
    uniform = read_video(real.items[0].path, select=Uniform(3))
    assert torch.equal(item["inputs"]["clipscore"], torch.from_numpy(uniform))
    assert item["inputs"]["fid"].shape == (2, 3, 299, 299)
    short = VideoViews(real.items, views, "real", seed=4)[1]  # 10 frames: too short for FVD only
    assert set(short["inputs"]) == {"fid", "clipscore"} and "has 10 frames" in short["errors"]["fvd"]


def test_unreadable_files_become_errors_not_exceptions(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    video_set = load_video_set(tmp_path)
    items = [VideoViews(video_set.items, {"fvd": FVDProtocol()}, "fake", 0)[i] for i in range(2)]
    assert items[0]["inputs"] == {} and "empty" in items[0]["errors"]["*"]
    assert items[1]["inputs"] == {} and "not a readable video" in items[1]["errors"]["*"]


def test_collate_stacks_equal_shapes_and_loader_keeps_order(sets):
    fake = load_video_set(sets / "fake")
    batches = list(make_loader(VideoViews(fake.items, {"fvd": FVDProtocol()}, "fake", 0), batch_size=2, workers=2))
    assert [b["index"] for b in batches] == [[0, 1], [2]]
    (positions, tensor), = batches[0]["inputs"]["fvd"]
    assert positions == [0, 1] and tensor.shape == (2, 3, 16, 32, 32) and tensor.dtype == torch.uint8
    mixed = collate([{"index": 0, "inputs": {"a": torch.zeros(2, 3)}, "errors": {}},
                     {"index": 1, "inputs": {"a": torch.zeros(4, 3)}, "errors": {"b": "short"}},
                     {"index": 2, "inputs": {"a": torch.ones(2, 3)}, "errors": {}}])
    assert [(p, t.shape) for p, t in mixed["inputs"]["a"]] == [([0, 2], (2, 2, 3)), ([1], (1, 4, 3))]
    assert mixed["errors"] == [(1, {"b": "short"})]


def test_row_store_is_a_float16_memmap(tmp_path):
    store = RowStore(tmp_path / "rows.f16", 3)
    store.append(np.array([[1.0, 2.0, 3.0], [0.1, 0.2, 0.3]]), np.array([4, 4]))
    store.append(torch.tensor([[5.0, 6.0, 7.0]]), np.array([9]))
    rows, positions = store.arrays()
    assert isinstance(rows, np.memmap) and rows.dtype == np.float16 and rows.shape == (3, 3)
    np.testing.assert_array_equal(rows[1], np.float16([0.1, 0.2, 0.3]))
    assert positions.tolist() == [4, 4, 9] and (tmp_path / "rows.f16").stat().st_size == 3 * 3 * 2
    with pytest.raises(ValueError, match="float16"):
        store.append(np.array([[1e6, 0, 0]]), np.array([10]))


def test_shards_cover_every_video_once():
    shards = [shard_positions(11, rank, 3) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(11)) and shards[1] == [1, 4, 7, 10]
    with pytest.raises(ValueError):
        shard_positions(5, 3, 3)

