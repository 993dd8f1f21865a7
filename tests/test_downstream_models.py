"""Table 2 classifiers: SlowFast and MViTv2 builds, the in-place pathway list, Kinetics weights resolution."""
from __future__ import annotations

import pytest
import torch

from downstream.models import (
    KINETICS_WEIGHTS,
    ClassifierSpec,
    SlowFastClassifier,
    build_classifier,
    count_parameters,
    load_backbone,
)
from ophora import weights as weights_registry

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture()
def no_weights(tmp_path, monkeypatch):
    """An empty cache and weights dir: no Kinetics file can be found."""
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(tmp_path / "weights"))
    return tmp_path


@pytest.mark.parametrize("arch", ["slowfast_r50", "mvit_v2_s"])
@pytest.mark.parametrize("crop", [32, 64])
def test_tiny_classifiers_map_a_video_to_logits(arch, crop):
    torch.manual_seed(0)
    model, init = build_classifier(ClassifierSpec(arch, "tiny", frames=8, crop=crop), num_classes=12)
    assert init["init"] == "scratch" and count_parameters(model) < 400_000
    video = torch.randn(2, 3, 8, crop, crop)
    logits = model(video)
    assert logits.shape == (2, 12) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_slowfast_gets_a_fresh_pathway_list_each_call():
    torch.manual_seed(0)
    model, _ = build_classifier(ClassifierSpec("slowfast_r50", "tiny", frames=8, crop=32), num_classes=5)
    model.eval()
    seen = []
    original = model.net.forward

    def spy(pathways):
        seen.append((id(pathways), [p.shape for p in pathways]))
        return original(pathways)

    model.net.forward = spy
    video = torch.randn(1, 3, 8, 32, 32)
    first, second = model(video), model(video)
    assert torch.equal(first, second)  # pytorchvideo overwrote the first list in place: the second call is unharmed
    assert seen[0][1] == [torch.Size([1, 3, 2, 32, 32]), torch.Size([1, 3, 8, 32, 32])]  # slow = every 4th frame
    assert isinstance(model, SlowFastClassifier)


def test_slowfast_is_fully_convolutional_for_larger_test_crops():
    """PySlowFast tests SlowFast on 256-px crops of a network trained on 224: the head pools what it gets.
    Here a network built for 32-px crops scores 64-px and 96-px crops."""
    torch.manual_seed(0)
    model, _ = build_classifier(ClassifierSpec("slowfast_r50", "tiny", frames=8, crop=32), num_classes=5)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 64, 64)).shape == (2, 5)
        assert model(torch.randn(1, 3, 8, 96, 96)).shape == (1, 5)


def test_full_sizes_match_the_published_architectures(no_weights):
    slowfast, init = build_classifier(ClassifierSpec("slowfast_r50", "full", frames=32, crop=224), 400)
    assert init["init"] == "scratch" and "not found" in init["note"]
    assert abs(count_parameters(slowfast) - 34.57e6) < 0.1e6  # SlowFast-R50 8x8 (PySlowFast model zoo: 34.57M)
    mvit, _ = build_classifier(ClassifierSpec("mvit_v2_s", "full", frames=16, crop=224), 400)
    assert abs(count_parameters(mvit) - 34.54e6) < 0.1e6  # torchvision MViT_V2_S_Weights: 34,537,744
    with pytest.raises(ValueError, match="16 frames at 224x224"):
        build_classifier(ClassifierSpec("mvit_v2_s", "full", frames=8, crop=224), 10)


def test_kinetics_weights_are_registered_with_public_sources():
    for name in KINETICS_WEIGHTS.values():
        entry = weights_registry.get_entry(name)
        assert entry.url.startswith("https://") and entry.file in entry.url
    assert weights_registry.get_entry("kinetics400:mvit_v2_s").sha256_prefix == "ae3be167"


def test_required_weights_missing_is_an_error_naming_the_fetch_command(no_weights):
    with pytest.raises(weights_registry.WeightsNotFoundError, match="fetch kinetics400:mvit_v2_s"):
        build_classifier(ClassifierSpec("mvit_v2_s", "full", weights="kinetics"), 52)


def test_backbone_loads_except_the_kinetics_head():
    torch.manual_seed(0)
    spec = ClassifierSpec("slowfast_r50", "tiny", frames=8, crop=32)
    kinetics, _ = build_classifier(spec, 400)
    target, _ = build_classifier(spec, 52)
    record = load_backbone(target, {"model_state": kinetics.net.state_dict()})
    assert record["skipped_tensors"] == ["blocks.6.proj.bias", "blocks.6.proj.weight"]
    for key, value in kinetics.net.state_dict().items():
        if not key.startswith("blocks.6.proj"):
            assert torch.equal(value, target.net.state_dict()[key]), key


def test_weights_auto_loads_a_file_found_through_the_registry(no_weights, monkeypatch):
    torch.manual_seed(0)
    entry = weights_registry.get_entry("kinetics400:mvit_v2_s")
    donor, _ = build_classifier(ClassifierSpec("mvit_v2_s", "full", weights="none"), 400)
    (no_weights / "weights").mkdir()
    torch.save(donor.state_dict(), no_weights / "weights" / entry.file)
    monkeypatch.setattr(weights_registry, "verify", lambda path, entry, use_cache=True: "test-file")
    model, init = build_classifier(ClassifierSpec("mvit_v2_s", "full", weights="auto"), 52)
    assert init["init"] == "kinetics" and init["skipped_tensors"] == ["head.1.bias", "head.1.weight"]
    assert torch.equal(model.conv_proj.weight, donor.conv_proj.weight)


def test_unknown_architecture_suggests_a_name():
    with pytest.raises(KeyError, match="slowfast_r50"):
        build_classifier(ClassifierSpec("slowfast_r5", "tiny"), 3)
