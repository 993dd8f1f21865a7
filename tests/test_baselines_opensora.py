"""Open-Sora 1.0 STDiT checkpoints into the suite's STDiT (baselines.opensora) and Bora's ``init_from``.

No released checkpoint can be downloaded here, so the checkpoints are written in Open-Sora's layout from a suite
model by the inverse mapping below, written independently of the converter from Open-Sora 1.0's code
(opensora/models/stdit/stdit.py, opensora/models/layers/blocks.py): fused qkv rows (q, k, v), a Conv3d (1, p, p)
patch kernel, a learned-sigma final layer whose rows are (H_p, W_p, C_out) with C_out = 2C (epsilon first, then
random variance rows interleaved per patch position), the null caption as ``y_embedder.y_embedding`` and the
position-embedding buffers Open-Sora saves. A learned-variance suite STDiT (out_channels 2C) takes the whole head."""
from __future__ import annotations

import copy
import hashlib
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from baselines import bora, opensora
from baselines.bora import BoraGenerator, load_bora_spec
from baselines.opensora import OpenSoraCheckpointError, convert_opensora_stdit, init_stdit_from_opensora
from baselines.stdit import STDiT
from ophora.training.logs import read_log

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# the tiny Bora preset's STDiT geometry (tiny VAE: 4 channels, factor 4; tiny T5: width 32, 32 tokens)
TINY = dict(in_channels=4, input_size=(8, 8), num_frames=16, patch_size=2, hidden_size=32, depth=2, num_heads=2,
            mlp_ratio=2.0, caption_channels=32, model_max_length=32, space_scale=0.5, time_scale=1.0)


def _model(seed: int, **changes) -> STDiT:
    torch.manual_seed(seed)
    model = STDiT(**{**TINY, **changes})
    with torch.no_grad():  # Open-Sora zero-initialises some outputs; give every weight a value to compare
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def to_opensora(model: STDiT, seed: int = 7) -> dict[str, torch.Tensor]:
    """The state dict Open-Sora 1.0's STDiT (learn_sigma) would hold for ``model``: the inverse mapping."""
    ours = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = model.config
    d, c, p = cfg.hidden_size, cfg.in_channels, cfg.patch_size
    g = torch.Generator().manual_seed(seed)
    out = {"x_embedder.proj.weight": ours["x_embedder.weight"].unsqueeze(2),  # Conv3d kernel (1, p, p)
           "x_embedder.proj.bias": ours["x_embedder.bias"],
           "t_embedder.mlp.0.weight": ours["t_embedder.linear_1.weight"],
           "t_embedder.mlp.0.bias": ours["t_embedder.linear_1.bias"],
           "t_embedder.mlp.2.weight": ours["t_embedder.linear_2.weight"],
           "t_embedder.mlp.2.bias": ours["t_embedder.linear_2.bias"],
           "t_block.1.weight": ours["t_block.1.weight"], "t_block.1.bias": ours["t_block.1.bias"],
           "y_embedder.y_proj.fc1.weight": ours["y_embedder.0.weight"],
           "y_embedder.y_proj.fc1.bias": ours["y_embedder.0.bias"],
           "y_embedder.y_proj.fc2.weight": ours["y_embedder.2.weight"],
           "y_embedder.y_proj.fc2.bias": ours["y_embedder.2.bias"],
           "y_embedder.y_embedding": ours["null_caption"],
           "final_layer.scale_shift_table": ours["final_table"],
           # buffers Open-Sora registers as persistent (values irrelevant: recomputed from the geometry)
           "pos_embed": torch.randn(1, 16, d, generator=g), "pos_embed_temporal": torch.randn(1, 16, d, generator=g)}
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        for kind in ("weight", "bias"):
            for attn in ("attn", "attn_temp"):
                q, kv = ours[f"{b}{attn}.q.{kind}"], ours[f"{b}{attn}.kv.{kind}"]
                out[f"{b}{attn}.qkv.{kind}"] = torch.cat([q, kv[:d], kv[d:]])  # rows: q, k, v
                out[f"{b}{attn}.proj.{kind}"] = ours[f"{b}{attn}.proj.{kind}"]
            for theirs, mine in (("q_linear", "q"), ("kv_linear", "kv"), ("proj", "proj")):
                out[f"{b}cross_attn.{theirs}.{kind}"] = ours[f"{b}cross_attn.{mine}.{kind}"]
            out[f"{b}mlp.fc1.{kind}"], out[f"{b}mlp.fc2.{kind}"] = ours[f"{b}mlp.0.{kind}"], ours[f"{b}mlp.2.{kind}"]
        out[f"{b}scale_shift_table"] = ours[f"{b}scale_shift_table"]
    weight = torch.randn(p * p * 2 * c, d, generator=g)  # rows (hp, wp, c_out): eps rows ours, sigma rows random
    bias = torch.randn(p * p * 2 * c, generator=g)
    if (cfg.out_channels or c) == 2 * c:  # a learned-variance model holds Open-Sora's head, same row layout
        out["final_layer.linear.weight"], out["final_layer.linear.bias"] = ours["final_linear.weight"], \
            ours["final_linear.bias"]
        return out
    for hp in range(p):
        for wp in range(p):
            for ch in range(c):
                weight[(hp * p + wp) * 2 * c + ch] = ours["final_linear.weight"][(hp * p + wp) * c + ch]
                bias[(hp * p + wp) * 2 * c + ch] = ours["final_linear.bias"][(hp * p + wp) * c + ch]
    out["final_layer.linear.weight"], out["final_layer.linear.bias"] = weight, bias
    return out


def _inputs(seed: int = 1, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, 16, 8, 8, generator=g)
    captions = torch.randn(batch, 32, 32, generator=g)
    mask = torch.ones(batch, 32)
    mask[0, 20:] = 0  # a padded caption
    return latents, torch.tensor([10, 900]), captions, mask


@torch.no_grad()
def test_a_checkpoint_in_open_soras_layout_loads_back_to_the_same_outputs(tmp_path):
    source, target = _model(0), _model(1)
    path = tmp_path / "OpenSora-v1-HQ-16x256x256.pth"
    torch.save(to_opensora(source), path)
    inputs = _inputs()
    assert not torch.allclose(target(*inputs), source(*inputs))
    record = init_stdit_from_opensora(target, path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    assert torch.equal(target(*inputs), source(*inputs))
    expected_keys = 16 + 2 * 19  # 16 outside the blocks (final linear and null caption included), 19 per block
    assert record == {"file": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                      "keys_converted": expected_keys, "keys_ignored": ["pos_embed", "pos_embed_temporal"],
                      "channels_dropped": 4, "null_caption_rows": [32, 32]}


@torch.no_grad()
def test_the_epsilon_half_of_open_soras_learned_sigma_head_is_what_the_model_predicts(tmp_path):
    """Open-Sora's final linear + unpatchify ("B (N_t N_h N_w) (T_p H_p W_p C_out) -> B C_out (N_t T_p)
    (N_h H_p) (N_w W_p)") on the same hidden state, first C of its 2C channels == the converted model's output."""
    source = _model(0)
    state = to_opensora(source)
    model = _model(1)
    model.load_state_dict(convert_opensora_stdit(state, dict(model.config)))
    hidden = {}
    model.final_linear.register_forward_hook(lambda module, args, out: hidden.update(x=args[0]))
    latents, steps, captions, mask = _inputs()
    ours = model(latents, steps, captions, mask)
    full = hidden["x"] @ state["final_layer.linear.weight"].T + state["final_layer.linear.bias"]  # [B, N, 4*8]
    b, (nt, nh, nw), p = len(full), (16, 4, 4), 2
    theirs = full.reshape(b, nt, nh, nw, 1, p, p, 8).permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, 8, 16, 8, 8)
    assert torch.allclose(theirs[:, :4], ours, atol=1e-6)
    assert not torch.allclose(theirs[:, 4:], ours, atol=1e-2)  # the variance half is another thing


@torch.no_grad()
def test_with_learn_sigma_the_whole_open_sora_head_is_kept_and_both_halves_match(tmp_path):
    """A learned-variance STDiT (out_channels 2C) takes all 2C rows: Open-Sora's final linear + unpatchify on the
    same hidden state equals the model's full output, epsilon and variance halves alike."""
    source = _model(0, out_channels=8)
    state = to_opensora(source)
    path = tmp_path / "opensora.pth"
    torch.save(state, path)
    model = _model(1, out_channels=8)
    record = init_stdit_from_opensora(model, path)
    assert record["channels_dropped"] == 0
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), model.state_dict().values()))
    hidden = {}
    model.final_linear.register_forward_hook(lambda module, args, out: hidden.update(x=args[0]))
    latents, steps, captions, mask = _inputs()
    ours = model(latents, steps, captions, mask)
    assert ours.shape == (2, 8, 16, 8, 8)
    full = hidden["x"] @ state["final_layer.linear.weight"].T + state["final_layer.linear.bias"]  # [B, N, 4*8]
    b, (nt, nh, nw), p = len(full), (16, 4, 4), 2
    theirs = full.reshape(b, nt, nh, nw, 1, p, p, 8).permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, 8, 16, 8, 8)
    assert torch.allclose(theirs, ours, atol=1e-6)
    assert (ours[:, 4:] - ours[:, :4]).abs().mean() > 1e-2  # two different halves
    # the same checkpoint into a fixed-variance model keeps the epsilon half only
    fixed = _model(2)
    assert init_stdit_from_opensora(fixed, path)["channels_dropped"] == 4
    assert torch.allclose(fixed(latents, steps, captions, mask), ours[:, :4], atol=1e-6)
    # a checkpoint without variance rows cannot fill a learned-variance head
    eps_only = to_opensora(_model(0))
    head = convert_opensora_stdit(eps_only, dict(_model(0).config))  # rows (hp, wp, c) with C_out = C
    eps_only["final_layer.linear.weight"], eps_only["final_layer.linear.bias"] = \
        head["final_linear.weight"], head["final_linear.bias"]
    with pytest.raises(OpenSoraCheckpointError, match=r"has 4 output channels \(no learned variance\); the model "
                                                      r"\(learn_sigma\) needs 8"):
        convert_opensora_stdit(eps_only, dict(model.config))


def _open_sora_attention(x, cond, q_w, q_b, kv_w, kv_b, proj_w, proj_b, heads):
    """Open-Sora's Attention (fused qkv: ``view(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)``) when ``cond`` is None,
    else MultiHeadCrossAttention (``kv_linear(cond).view(1, -1, 2, H, hd).unbind(2)``), batch of one, no mask."""
    n, d = x.shape[1], x.shape[2]
    if cond is None:
        q, k, v = (x @ q_w.T + q_b).view(1, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    else:
        q = (x @ q_w.T + q_b).view(1, n, heads, d // heads).transpose(1, 2)
        k, v = (cond @ kv_w.T + kv_b).view(1, -1, 2, heads, d // heads).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
    weights = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    return (weights @ v).transpose(1, 2).reshape(1, n, d) @ proj_w.T + proj_b


@torch.no_grad()
def test_the_split_attentions_compute_open_soras_fused_and_cross_attention():
    state = to_opensora(_model(0))
    model = _model(1)
    model.load_state_dict(convert_opensora_stdit(state, dict(model.config)))
    g = torch.Generator().manual_seed(5)
    x, cond = torch.randn(1, 6, 32, generator=g), torch.randn(1, 9, 32, generator=g)
    for name in ("attn", "attn_temp"):
        w = {k: state[f"blocks.1.{name}.{k}"] for k in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")}
        theirs = _open_sora_attention(x, None, w["qkv.weight"], w["qkv.bias"], None, None, w["proj.weight"],
                                      w["proj.bias"], heads=2)
        assert torch.allclose(getattr(model.blocks[1], name)(x), theirs, atol=1e-6), name
    w = {k: state[f"blocks.1.cross_attn.{k}"] for k in ("q_linear.weight", "q_linear.bias", "kv_linear.weight",
                                                         "kv_linear.bias", "proj.weight", "proj.bias")}
    theirs = _open_sora_attention(x, cond, *w.values(), heads=2)
    assert torch.allclose(model.blocks[1].cross_attn(x, cond), theirs, atol=1e-6)


def test_bad_checkpoints_fail_naming_the_key_and_the_geometry(tmp_path):
    args = dict(_model(0).config)
    state = to_opensora(_model(0))
    lacking = {k: v for k, v in state.items() if k != "blocks.1.attn_temp.qkv.weight"}
    with pytest.raises(OpenSoraCheckpointError, match=r"lacks 1 key\(s\): blocks\.1\.attn_temp\.qkv\.weight"):
        convert_opensora_stdit(lacking, args)
    with pytest.raises(OpenSoraCheckpointError, match=r"x_embedder\.proj\.weight: checkpoint shape \(48, 4, 1, 2, 2\), "
                                                      r"expected \(32, 4, 1, 2, 2\).*checkpoint: hidden_size 48"):
        convert_opensora_stdit(to_opensora(_model(0, hidden_size=48)), args)
    with pytest.raises(OpenSoraCheckpointError, match=r"unexpected key\(s\): blocks\.2\..*checkpoint: .*depth 3"):
        convert_opensora_stdit(to_opensora(_model(0, depth=3)), args)
    with pytest.raises(OpenSoraCheckpointError, match=r"x_embedder\.proj\.weight: checkpoint shape \(32, 4, 1, 4, 4\)"):
        convert_opensora_stdit(to_opensora(_model(0, patch_size=4)), args)
    extra = {**state, "blocks.0.attn.q_norm.weight": torch.ones(16)}
    with pytest.raises(OpenSoraCheckpointError, match=r"unexpected key\(s\): blocks\.0\.attn\.q_norm\.weight"):
        convert_opensora_stdit(extra, args)
    bad_head = {**state, "final_layer.linear.weight": state["final_layer.linear.weight"][:-1]}
    with pytest.raises(OpenSoraCheckpointError, match=r"final_layer\.linear: checkpoint weight \(31, 32\)"):
        convert_opensora_stdit(bad_head, args)
    # a 16-token null caption is extended with its last row (Open-Sora's loader rule)
    short = {**state, "y_embedder.y_embedding": state["y_embedder.y_embedding"][:16]}
    null = convert_opensora_stdit(short, args)["null_caption"]
    assert torch.equal(null[:16], state["y_embedder.y_embedding"][:16]) and torch.equal(null[31], null[15])


def test_nested_prefixed_and_safetensors_files_load(tmp_path):
    source = _model(0)
    state = to_opensora(source)
    torch.save({"model": state, "step": torch.tensor(3)}, tmp_path / "nested.pt")
    torch.save({"ema": {f"module.{k}": v for k, v in state.items()}, "model": {}}, tmp_path / "ema.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "plain.safetensors"))
    torch.save({**state, "step": torch.tensor(3)}, tmp_path / "extra.pt")
    with pytest.raises(OpenSoraCheckpointError, match=r"1 unexpected key\(s\): step "):
        init_stdit_from_opensora(_model(1), tmp_path / "extra.pt")
    for name in ("nested.pt", "ema.pth", "plain.safetensors"):
        target = _model(1)
        init_stdit_from_opensora(target, tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown checkpoint format '\.npz'"):
        opensora.load_opensora_checkpoint(tmp_path / "w.npz")
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "opt.pt")
    with pytest.raises(ValueError, match=r"no state dict found \(\['optimizer'\]\)"):
        opensora.load_opensora_checkpoint(tmp_path / "opt.pt")
    with pytest.raises(FileNotFoundError, match="Open-Sora checkpoint not found"):
        opensora.load_opensora_checkpoint(tmp_path / "absent.pth")


def test_missing_assets_lists_the_checkpoint_init_from_names(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)
    generator = BoraGenerator()
    assert generator.missing_assets("tiny") == []
    missing = generator.missing_assets("tiny", {"init_from": str(tmp_path / "nowhere.pth")})
    assert missing == [("Open-Sora STDiT weights (" + str(tmp_path / "nowhere.pth") + ")",
                        str((tmp_path / "nowhere.pth").resolve()), missing[0][2])]
    (asset, where, how), = generator.missing_assets("tiny", {"init_from": "opensora-v1-hq-16x256x256"})
    assert where == str(tmp_path / "cache" / "weights" / "OpenSora-v1-HQ-16x256x256.pth")
    assert how.startswith("python -m ophora.weights fetch opensora-v1-hq-16x256x256")
    assert any("opensora-v1-hq-16x256x256" in m[0] for m in generator.missing_assets("paper"))
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(tmp_path / "w"))
    (tmp_path / "w").mkdir()
    torch.save(to_opensora(_model(0)), tmp_path / "w" / "OpenSora-v1-HQ-16x256x256.pth")
    assert generator.missing_assets("tiny", {"init_from": "opensora-v1-hq-16x256x256"}) == []
    assert load_bora_spec("paper").init_from == "opensora-v1-hq-16x256x256"
    with pytest.raises(FileNotFoundError, match="did you mean 'opensora-v1-hq-16x256x256'"):
        opensora.resolve_opensora("opensora-v1-hq-16x256x25")


def _record_built_models(monkeypatch) -> list[dict]:
    """Make ``BoraRecipe.build_model`` also append a copy of each model's state dict (the weights training
    starts from) to the returned list."""
    built = []
    original = bora.BoraRecipe.build_model

    def spy(self, spec):
        model = original(self, spec)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(bora.BoraRecipe, "build_model", spy)
    return built


def test_a_tiny_bora_run_starts_from_the_checkpoint(four_clip_world, tmp_path, monkeypatch):
    """The model build_model hands to training holds the checkpoint's weights, and the first step's loss equals
    that of the same run started from the source model itself (same frozen parts, same draws)."""
    source = _model(0)
    path = tmp_path / "opensora.pth"
    torch.save(to_opensora(source), path)
    built = _record_built_models(monkeypatch)
    settings = {"vae.fit_steps": 5, "vae.fit_batch_size": 4, "train.batch_size": 4, "train.max_steps": 2,
                "train.checkpoint_every": 2}
    model = BoraGenerator().train(four_clip_world[1], tmp_path / "a", overrides={**settings, "init_from": str(path)})
    assert all(torch.equal(built[0][k], v) for k, v in source.state_dict().items())
    record = json.loads((model / "init_from.json").read_text())
    assert record["init_from"] == str(path) and record["channels_dropped"] == 4
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def from_source(self, spec):
        return copy.deepcopy(source).train()

    monkeypatch.setattr(bora.BoraRecipe, "build_model", from_source)
    shutil.copytree(tmp_path / "a" / "base", tmp_path / "b" / "base")  # same tiny VAE, T5 and tokenizer
    BoraGenerator().train(four_clip_world[1], tmp_path / "b", overrides=settings)
    first_a, first_b = read_log(tmp_path / "a")[0]["loss"], read_log(tmp_path / "b")[0]["loss"]
    assert first_a == first_b, (first_a, first_b)
    with pytest.raises(ValueError, match="takes no init folder.*init_from"):
        BoraGenerator().train(four_clip_world[1], tmp_path / "c", init=tmp_path / "a" / "model")


def test_a_learned_variance_bora_run_starts_from_the_whole_checkpoint(four_clip_world, tmp_path, monkeypatch):
    """The paper setup (init_from + learn_sigma): the model training starts from holds every row of Open-Sora's
    2C head, and the run records no dropped channels."""
    source = _model(0, out_channels=8)
    path = tmp_path / "opensora.pth"
    torch.save(to_opensora(source), path)
    built = _record_built_models(monkeypatch)
    settings = {"vae.fit_steps": 5, "vae.fit_batch_size": 4, "train.batch_size": 4, "train.max_steps": 1,
                "train.checkpoint_every": 1, "diffusion.learn_sigma": True, "init_from": str(path)}
    model = BoraGenerator().train(four_clip_world[1], tmp_path / "a", overrides=settings)
    assert built[0].keys() == source.state_dict().keys()
    assert all(torch.equal(built[0][k], v) for k, v in source.state_dict().items())
    assert built[0]["final_linear.weight"].shape == (2 * 2 * 8, 32)
    assert json.loads((model / "init_from.json").read_text())["channels_dropped"] == 0
