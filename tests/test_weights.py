"""ophora.weights: resolution order, error messages, checksums, did-you-mean, explicit-only downloads."""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import threading
import urllib.request
from pathlib import Path

import pytest
import torch

from ophora import weights as W

PAYLOAD = b"ophora fake detector weights\n" * 100
NAME = "fake-detector"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Private cache dir, no weights dir, and a fake registry entry whose checksum matches PAYLOAD."""
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)
    entry = W.WeightsEntry(name=NAME, file="fake.bin", url="https://example.invalid/fake.bin", loader="state_dict",
                           license="test", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setitem(W.REGISTRY, NAME, entry)
    return entry


@pytest.fixture
def no_network(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted without an explicit fetch")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(W, "_download", forbidden)


def _put(folder: Path, data: bytes = PAYLOAD, name: str = "fake.bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


def test_resolution_order_explicit_then_env_then_cache(tmp_path, monkeypatch, no_network):
    explicit = _put(tmp_path / "explicit")
    env_file = _put(tmp_path / "env")
    cache_file = _put(W.cache_dir() / "weights")
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(tmp_path / "env"))
    assert W.resolve(NAME, explicit) == explicit
    assert W.resolve(NAME) == env_file
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR")
    assert W.resolve(NAME) == cache_file


def test_missing_explicit_path_never_falls_back(tmp_path, no_network):
    _put(W.cache_dir() / "weights")
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve(NAME, tmp_path / "typo.bin")
    assert str(tmp_path / "typo.bin") in str(info.value)
    assert str(W.cache_dir()) not in str(info.value)


def test_missing_file_message_names_everything(tmp_path, monkeypatch, isolated, no_network):
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(tmp_path / "env"))
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve(NAME)
    message = str(info.value)
    assert "fake.bin" in message and isolated.sha256 in message
    for path in W.candidate_paths(NAME):
        assert str(path) in message
    assert f"python -m ophora.weights fetch {NAME}" in message


def test_checksum_mismatch_is_a_clear_error(tmp_path, isolated):
    bad = _put(tmp_path, b"corrupted")
    with pytest.raises(W.ChecksumMismatchError) as info:
        W.resolve(NAME, bad)
    message = str(info.value)
    assert isolated.sha256 in message and hashlib.sha256(b"corrupted").hexdigest() in message
    assert W.resolve(NAME, bad, check=False) == bad


def test_prefix_only_entry_checks_the_prefix(tmp_path, monkeypatch):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    entry = W.WeightsEntry(name="prefixed", file="fake.bin", url="", loader="state_dict", license="",
                           sha256_prefix=digest[:8])
    monkeypatch.setitem(W.REGISTRY, "prefixed", entry)
    assert W.verify(_put(tmp_path / "a"), entry) == digest
    with pytest.raises(W.ChecksumMismatchError, match="prefix only"):
        W.verify(_put(tmp_path / "b", b"other"), entry)


def test_hash_is_remembered_in_this_process_until_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "_HASHED", {})
    path = _put(tmp_path)
    first = W.file_sha256(path)
    monkeypatch.setattr(hashlib, "sha256", lambda *a: (_ for _ in ()).throw(AssertionError("rehashed")))
    assert W.file_sha256(path) == first  # served from this process's memo
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="rehashed"):
        W.file_sha256(path)


def test_no_digest_is_trusted_across_processes(tmp_path, monkeypatch):
    path = _put(tmp_path)
    W.file_sha256(path)
    monkeypatch.setattr(W, "_HASHED", {})  # what a new process starts with
    monkeypatch.setattr(hashlib, "sha256", lambda *a: (_ for _ in ()).throw(AssertionError("rehashed")))
    with pytest.raises(AssertionError, match="rehashed"):
        W.file_sha256(path)
    assert not list(W.cache_dir().glob("*sha256*"))  # nothing written for a later process to trust


def test_did_you_mean():
    with pytest.raises(KeyError, match="Did you mean 'pytorch-fid-inception'"):
        W.get_entry("pytorch-fid-inceptoin")
    with pytest.raises(KeyError, match="Registered:"):
        W.get_entry("zzzz")


def test_nothing_downloads_implicitly(tmp_path, capsys, no_network):
    with pytest.raises(W.WeightsNotFoundError):
        W.load(NAME)
    assert W.main(["list"]) == 0
    assert re.search(rf"{NAME}\s+fake.bin\s+missing", capsys.readouterr().out)
    assert W.main(["where", NAME]) == 2
    assert "fetch fake-detector" in capsys.readouterr().err


@pytest.mark.parametrize("loader", ["state_dict", "safetensors"])
def test_load_weight_file_with_its_loader(tmp_path, monkeypatch, loader):
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    path = tmp_path / f"sd.{loader}"
    if loader == "safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    entry = W.WeightsEntry(name="sd", file=path.name, url="", loader=loader, license="",
                           sha256=W.file_sha256(path))
    monkeypatch.setitem(W.REGISTRY, "sd", entry)
    assert torch.equal(W.load("sd", path)["w"], tensors["w"])


def test_fetch_from_file_url_verifies_and_renames(tmp_path):
    source = _put(tmp_path / "remote")
    final = W.fetch(NAME, dest=tmp_path / "dest", url=source.as_uri(), progress=False)
    assert final == tmp_path / "dest" / "fake.bin" and final.read_bytes() == PAYLOAD
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["fake.bin"]
    assert W.resolve(NAME, final) == final


def test_failed_checksum_leaves_nothing_behind(tmp_path):
    source = _put(tmp_path / "remote", b"tampered bytes")
    with pytest.raises(W.ChecksumMismatchError):
        W.fetch(NAME, dest=tmp_path / "dest", url=source.as_uri(), progress=False)
    assert list((tmp_path / "dest").iterdir()) == []


def test_fetch_command_over_loopback_http(tmp_path, capsys):
    _put(tmp_path / "served")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/fake.bin"
        assert W.main(["fetch", NAME, "--dest", str(tmp_path / "dest"), "--url", url]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "dest" / "fake.bin").read_bytes() == PAYLOAD
    assert capsys.readouterr().out.strip() == str(tmp_path / "dest" / "fake.bin")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_published_entries_are_consistent():
    fid = W.get_entry("pytorch-fid-inception")
    assert fid.sha256.startswith(fid.sha256_prefix) and fid.sha256_prefix in fid.file
    clip = W.get_entry("open_clip:ViT-L-14/openai")
    assert clip.sha256 == clip.url.split("/")[-2]
    for entry in W.REGISTRY.values():
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.loader in ("state_dict", "torchscript", "safetensors")


def test_default_cache_dir_is_a_user_dir(monkeypatch):
    monkeypatch.delenv("OPHORA_CACHE")
    folder = W.cache_dir()
    assert folder.name == "ophora" and "site-packages" not in str(folder)


def _names_the_project_tells_users_to_fetch() -> set[str]:
    """Weights names in ``weights fetch NAME`` / ``weights where NAME`` commands of the README and docs/, the
    code and the shipped configs, and the registry names that shipped YAML configs point at."""
    root = Path(__file__).resolve().parents[1]
    code = [p for d in ("ophora", "benchmarks", "baselines", "downstream") for p in (root / d).rglob("*")
            if p.suffix in (".py", ".yaml")]
    texts = [root / "README.md", *sorted((root / "docs").glob("*.md")), *code]
    names = set()
    for path in texts:
        text = path.read_text()
        names |= set(re.findall(r"weights (?:fetch|where) ([a-z0-9][\w:./-]*[\w])", text))
        if path.suffix == ".yaml":
            names |= set(re.findall(r"(?:pretrained|init_from|weights): ([a-z][\w:.-]*-[\w:./-]+)", text))
    return names - {"random-init"}  # a detector mode, not a file


def test_a_fresh_process_lists_every_weights_name_the_project_mentions():
    import subprocess
    import sys

    named = _names_the_project_tells_users_to_fetch()
    assert {"kinetics400:slowfast_r50", "kinetics400:mvit_v2_s", "sd-vae-ft-ema", "pytorch-fid-inception"} <= named
    for command in ("benchmarks.weights", "ophora.weights"):
        listed = subprocess.run([sys.executable, "-m", command, "list"], capture_output=True, text=True, check=True,
                                timeout=120).stdout
        shown = {line.split()[0] for line in listed.splitlines() if line.strip()}
        assert named - shown == set(), command
