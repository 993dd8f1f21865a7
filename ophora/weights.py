"""One registry of detector weight files: where each comes from, its checksum, and where it is found locally.

Nothing is ever downloaded implicitly. :func:`resolve` looks, in order, at an explicit path,
``$OPHORA_WEIGHTS_DIR/<file>`` and ``<cache dir>/weights/<file>`` (cache dir: ``$OPHORA_CACHE``, else the
platform's user cache dir, e.g. ``~/.cache/ophora``) and, for files shipped inside a package (``url``
``package:<package>/<path>``, :mod:`ophora.data.bundled`), that file; it verifies the sha256 and returns the
path; a missing file raises :class:`WeightsNotFoundError` naming every path tried and the command that fetches
it::

    python -m ophora.weights list
    python -m ophora.weights where pytorch-fid-inception
    python -m ophora.weights fetch pytorch-fid-inception [--out DIR] [--url URL]

Checksums are verified on each process's first use of a file; within a process the digest is remembered while
the file's (device, inode, size, mtime, ctime) are unchanged. Nothing is trusted across processes (an earlier
release kept an on-disk cache keyed by path, size and mtime, which a swapped file with its mtime restored passed).
:func:`main` reports user errors (unknown name, missing file, checksum mismatch, failed download) as one
``error:`` message on stderr and exit status 2, without a traceback.

Checksum provenance. Where the publisher states no sha256, the value recorded here was found in several
independent public projects that pin the same file (with the same byte size) and is consistent with the
publisher's own partial checksum where one exists; each entry's ``checksum_source`` says which.
"""
from __future__ import annotations

import argparse
import http.client
import os
import sys
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import platformdirs
import safetensors.torch
import torch
from tqdm import tqdm

from ophora.data.atomic import atomic_path
from ophora.data.bundled import PACKAGE_PREFIX, package_file
from ophora.flags import HelpFormatter, add_output, add_progress, make_parser
from ophora.hashing import sha256_file
from ophora.registry import lookup

__all__ = [
    "WeightsEntry", "WeightsNotFoundError", "ChecksumMismatchError", "REGISTRY", "register", "get_entry",
    "FOLDERS", "register_folder",
    "cache_dir", "candidate_paths", "resolve", "verify", "file_sha256", "load", "fetch", "main",
]

Loader = Literal["state_dict", "torchscript", "safetensors", "hf_folder"]  # hf_folder: a diffusers/transformers dir
_CHUNK = 1 << 20  # bytes read per download step


@dataclass(frozen=True)
class WeightsEntry:
    """A published weight file. ``sha256`` is the full hex digest, or None when no trustworthy full digest is
    known; ``sha256_prefix`` is then the publisher's partial digest (torchvision-style file names), if any."""

    name: str
    file: str
    url: str
    loader: Loader
    license: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    size_bytes: int | None = None
    checksum_source: str = ""
    files: tuple[str, ...] = ()  # hf_folder entries: files the folder must hold (``file`` names the folder)

    @property
    def is_shipped(self) -> bool:
        """A file shipped inside an installed package (``url`` is ``package:<package>/<path>``)."""
        return self.url.startswith(PACKAGE_PREFIX)

    @property
    def is_folder(self) -> bool:
        """A pretrained folder (diffusers ``from_pretrained`` / transformers layout) rather than one file."""
        return self.loader == "hf_folder"

    def expected(self) -> str:
        """Human-readable expected checksum."""
        if self.sha256:
            return self.sha256
        return f"{self.sha256_prefix}... (prefix only)" if self.sha256_prefix else "unknown (not verified)"


class WeightsNotFoundError(FileNotFoundError):
    """A registered weight file is not present in any searched location."""


class ChecksumMismatchError(RuntimeError):
    """A weight file exists but its sha256 differs from the registry's."""


REGISTRY: dict[str, WeightsEntry] = {}
FOLDERS: dict[str, WeightsEntry] = {}  # pretrained folders (loader "hf_folder"), kept apart from single files


def register_folder(entry: WeightsEntry) -> WeightsEntry:
    """Add a pretrained-folder entry (``loader="hf_folder"``); ``get_entry``/``resolve`` find it like a file."""
    if not entry.is_folder:
        raise ValueError(f"{entry.name!r}: register_folder takes hf_folder entries; use register for files")
    old = FOLDERS.get(entry.name)
    if (old is not None and old != entry) or entry.name in REGISTRY:
        raise ValueError(f"weights {entry.name!r} already registered with different content")
    FOLDERS[entry.name] = entry
    return entry


def register(entry: WeightsEntry) -> WeightsEntry:
    """Add ``entry``; re-registering an identical entry is a no-op, a different one under the same name fails."""
    old = REGISTRY.get(entry.name)
    if old is not None and old != entry:
        raise ValueError(f"weights {entry.name!r} already registered with different content: {old}")
    REGISTRY[entry.name] = entry
    return entry


register(WeightsEntry(
    name="pytorch-fid-inception",
    file="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    loader="state_dict",
    license="Apache-2.0 (pytorch-fid; weights ported from TensorFlow's inception-2015-12-05)",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    sha256_prefix="6726825d",
    size_bytes=95_628_359,
    checksum_source="file name carries the publisher's 8-hex prefix; full digest and size pinned by several "
                    "public projects (pytorch-fid URL table; torch-fidelity re-hosts the same bytes)",
))
register(WeightsEntry(
    name="stylegan-v-i3d",
    file="i3d_torchscript.pt",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    loader="torchscript",
    license="TorchScript port (StyleGAN-V authors) of DeepMind's Kinetics-400 I3D (kinetics-i3d, Apache-2.0); "
            "redistribution terms not stated by the porters",
    sha256="bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2",
    size_bytes=51_235_320,
    checksum_source="publisher states none; digest and size pinned identically by several public projects "
                    "that download the StyleGAN-V Dropbox file",
))
register(WeightsEntry(
    name="stylegan-v-inception",
    file="inception-2015-12-05.pt",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    loader="torchscript",
    license="NVIDIA's TorchScript translation (stylegan2-ada-pytorch, NVIDIA Source Code License) of TensorFlow's "
            "inception-2015-12-05; StyleGAN-V's metrics load this URL unchanged (src/metrics/inception_score.py)",
    checksum_source="not pinned: the publisher states no checksum and no public project pinning this file's "
                    "sha256 was found (searched 2026-12-06), so any file of this name is accepted; results record "
                    "the sha256 of the file they used",
))
register(WeightsEntry(
    name="open_clip:ViT-L-14/openai",
    file="ViT-L-14.pt",
    url="https://openaipublic.azureedge.net/clip/models/"
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    loader="torchscript",
    license="MIT (OpenAI CLIP)",
    sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    checksum_source="publisher: the URL path segment is the file's sha256 (verified so by clip and open_clip)",
))

# Pretrained folders of the baselines (Endora, Bora): no single file, so no sha256; ``files`` must be present.
register_folder(WeightsEntry(
    name="sd-vae-ft-ema",
    file="sd-vae-ft-ema",
    url="https://huggingface.co/stabilityai/sd-vae-ft-ema",
    loader="hf_folder",
    license="MIT (stabilityai/sd-vae-ft-ema)",
    files=("config.json", "diffusion_pytorch_model.safetensors"),
    checksum_source="folder: diffusers AutoencoderKL.from_pretrained(<folder>); the Hub pins each file's sha256",
))
register_folder(WeightsEntry(
    name="sd-vae-ft-mse",
    file="sd-vae-ft-mse",
    url="https://huggingface.co/stabilityai/sd-vae-ft-mse",
    loader="hf_folder",
    license="MIT (stabilityai/sd-vae-ft-mse)",
    files=("config.json", "diffusion_pytorch_model.safetensors"),
    checksum_source="folder: diffusers AutoencoderKL.from_pretrained(<folder>); the Hub pins each file's sha256 "
                    "(not recorded here); Endora's train.py loads stabilityai/sd-vae-ft-mse",
))
register_folder(WeightsEntry(
    name="dino-vits8",
    file="dino-vits8",
    url="https://huggingface.co/facebook/dino-vits8",
    loader="hf_folder",
    license="Apache-2.0 (facebook/dino-vits8)",
    files=("config.json",),
    checksum_source="folder: transformers ViTModel.from_pretrained(<folder>) (weights as pytorch_model.bin or "
                    "model.safetensors); Endora's ViT-S/8 DINO",
))
register_folder(WeightsEntry(
    name="t5-v1_1-xxl",
    file="t5-v1_1-xxl",
    url="https://huggingface.co/DeepFloyd/t5-v1_1-xxl",
    loader="hf_folder",
    license="Apache-2.0 (google t5-v1_1-xxl, DeepFloyd re-upload used by Open-Sora and Bora)",
    files=("config.json", "spiece.model"),
    checksum_source="folder: transformers T5EncoderModel / AutoTokenizer.from_pretrained(<folder>)",
))

# Open-Sora 1.0 STDiT-XL/2 checkpoints (Bora's starting point; baselines/opensora.py converts them). File names
# and URLs as in Open-Sora's own table (opensora/utils/ckpt_utils.py ``pretrained_models``).
for _name, _file in (("opensora-v1-hq-16x256x256", "OpenSora-v1-HQ-16x256x256.pth"),
                     ("opensora-v1-hq-16x512x512", "OpenSora-v1-HQ-16x512x512.pth"),
                     ("opensora-v1-16x256x256", "OpenSora-v1-16x256x256.pth")):
    register(WeightsEntry(
        name=_name,
        file=_file,
        url=f"https://huggingface.co/hpcai-tech/Open-Sora/resolve/main/{_file}",
        loader="state_dict",
        license="Apache-2.0 (hpcai-tech/Open-Sora)",
        checksum_source="not pinned: the Hub lists each LFS file's sha256 but none could be fetched and verified "
                        "here (no network), so any file of this name is accepted; baselines.opensora records the "
                        "sha256 of the file it loads",
    ))


# Kinetics-400 backbones of the Table 2 classifiers (downstream/models.py loads them, classification head excluded).
register(WeightsEntry(
    name="kinetics400:slowfast_r50",
    file="SLOWFAST_8x8_R50.pyth",
    url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
    loader="state_dict",
    license="Apache-2.0 (pytorchvideo model zoo)",
    checksum_source="publisher states no checksum; not verified",
))
register(WeightsEntry(
    name="kinetics400:mvit_v2_s",
    file="mvit_v2_s-ae3be167.pth",
    url="https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth",
    loader="state_dict",
    license="BSD-3-Clause (torchvision)",
    sha256_prefix="ae3be167",
    checksum_source="torchvision file name carries the publisher's 8-hex sha256 prefix",
))


# torchvision's RAFT optical flow (benchmarks/detectors/raft_tracker.py: the learned point tracker of fvmd/raft).
# File names and URLs as torchvision 0.29's Raft_Large_Weights.C_T_SKHT_V2 (its DEFAULT) and
# Raft_Small_Weights.C_T_V2 (its DEFAULT) declare them.
register(WeightsEntry(
    name="raft_large:C_T_SKHT_V2",
    file="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    loader="state_dict",
    license="BSD-3-Clause (torchvision); trained on FlyingChairs + FlyingThings3D, fine-tuned on Sintel, KITTI, "
            "HD1K and Things",
    sha256="ff5fadd56d26b40647388883af1547351ea17868b765c05b27231e72dd16a322",
    sha256_prefix="ff5fadd5",
    checksum_source="torchvision file name carries the publisher's 8-hex sha256 prefix; the full digest is pinned "
                    "identically by several independent public projects and starts with that prefix",
))
register(WeightsEntry(
    name="raft_small:C_T_V2",
    file="raft_small_C_T_V2-01064c6d.pth",
    url="https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
    loader="state_dict",
    license="BSD-3-Clause (torchvision); trained on FlyingChairs + FlyingThings3D",
    sha256="01064c6dba73b0fc9fc8edf772248560a00a3acfd62ac6677e9eeebad9680e27",
    sha256_prefix="01064c6d",
    checksum_source="torchvision file name carries the publisher's 8-hex sha256 prefix; the full digest is pinned "
                    "identically by several independent public projects and starts with that prefix",
))


# The surgical-domain detectors (benchmarks/detectors/surgical.py), trained on the OphSim worlds of the reserved
# seeds 7001-7004 and shipped inside the package: resolved from the package, their sha256 verified like any file.
SURGICAL_SHA256 = {
    "frame": "8703e9fb62319dd607bbc97ca4e1886083c9752fe8e5a80b22e9b82eb2d6ca2e",
    "video": "9829b2626180074f3f281785ae205d371a40aa16aa837bae799d19ccfa22a276",
    "dual": "8e15b42f1687afa4b323cc10260cc8238282d931d6314da214c37132b5a3915b",
}
# the file version of each (video v2: v1's body plus the arrow-of-time branch)
SURGICAL_VERSION = {"frame": "v1", "video": "v2", "dual": "v1"}
for _kind, _digest in SURGICAL_SHA256.items():
    _file = f"ophsim-surgical-{_kind}-{SURGICAL_VERSION[_kind]}.safetensors"
    register(WeightsEntry(
        name=f"ophsim-surgical:{_kind}",
        file=_file,
        url=f"package:benchmarks/detectors/surgical_weights/{_file}",
        loader="safetensors",
        license="Apache-2.0 (trained by the Ophora suite on simulated OphSim surgeries; no third-party data)",
        sha256=_digest,
        checksum_source="python -m benchmarks.detectors.train_surgical --out benchmarks/detectors/surgical_weights; "
                        "the digest of the file it wrote (recipe.json beside it records the run)",
    ))


def shipped_digests() -> dict[str, str]:
    """``{entry name: sha256}`` of every registered file that ships inside the package (the surgical detectors):
    a cache of scores made with them keys on this, so new shipped weights are never scored from an old cache."""
    return {name: e.sha256 for name, e in sorted(REGISTRY.items()) if e.url.startswith("package:")}


def get_entry(name: str) -> WeightsEntry:
    """The registered entry ``name``; unknown names raise KeyError with close matches."""
    return lookup({**REGISTRY, **FOLDERS}, name, "weights")


def cache_dir() -> Path:
    """Ophora's user cache dir: ``$OPHORA_CACHE`` or the platform default (never inside site-packages)."""
    env = os.environ.get("OPHORA_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("ophora", appauthor=False))


def candidate_paths(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """Where :func:`resolve` looks for ``name``, in order: explicit path, ``$OPHORA_WEIGHTS_DIR``, cache dir, and
    the package's own copy for a shipped file."""
    entry = get_entry(name)
    paths = [Path(path).expanduser()] if path is not None else []
    env_dir = os.environ.get("OPHORA_WEIGHTS_DIR")
    if env_dir:
        paths.append(Path(env_dir).expanduser() / entry.file)
    paths.append(cache_dir() / "weights" / entry.file)
    if entry.is_shipped:
        try:
            paths.append(package_file(entry.url, must_exist=False))
        except FileNotFoundError:  # the package is not installed as files: the other places remain
            pass
    return paths


def resolve(name: str, path: str | os.PathLike | None = None, check: bool = True) -> Path:
    """Path of the first existing candidate for ``name`` (verified when ``check``).

    An explicit ``path`` that does not exist is an error even if other locations hold the file, so a typo
    never silently falls back to a different file.
    """
    entry = get_entry(name)
    tried = candidate_paths(name, path)
    if path is not None:
        tried = tried[:1]
    for candidate in tried:
        if entry.is_folder and candidate.is_dir():
            return _check_folder(candidate, entry) if check else candidate
        if not entry.is_folder and candidate.is_file():
            if check:
                verify(candidate, entry)
            return candidate
    raise WeightsNotFoundError(_missing_message(entry, tried, explicit=path is not None))


def _check_folder(folder: Path, entry: WeightsEntry) -> Path:
    """A folder entry has no single checksum: check that it holds the entry's ``files``."""
    missing = [name for name in entry.files if not (folder / name).exists()]
    if missing:
        raise WeightsNotFoundError(f"weights {entry.name!r} at {folder} lack {missing}; expected a folder with "
                                   f"{list(entry.files)} ({entry.url})")
    return folder


def _missing_message(entry: WeightsEntry, tried: list[Path], explicit: bool) -> str:
    lines = [f"weights {entry.name!r} ({entry.file}) not found. Tried:"]
    lines += [f"  {p}" for p in tried]
    lines.append(f"expected sha256: {entry.expected()}")
    if not explicit:
        lines.append("set $OPHORA_WEIGHTS_DIR to a folder holding the file, pass an explicit path, or fetch it:")
    lines.append(_fetch_hint(entry))
    return "\n".join(lines)


def _fetch_hint(entry: WeightsEntry) -> str:
    if entry.is_shipped:
        return (f"  {entry.name!r} ships inside the package ({entry.url}): reinstall the suite (pip install -e .) "
                f"or rebuild it with {entry.checksum_source.split('; ')[0]}")
    if entry.is_folder:
        repo = entry.url.rstrip("/").split("huggingface.co/")[-1]
        return (f"  huggingface-cli download {repo} --local-dir <cache dir>/weights/{entry.file}   (a folder; "
                f"{entry.url})")
    return f"  python -m ophora.weights fetch {entry.name}   (from {entry.url})"


# ---------------------------------------------------------------------------------------------------------
# Checksums


_HASHED: dict[tuple, str] = {}  # this process's digests, keyed by _identity(); never written to disk


def _identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file's bytes may have: (device, inode, size, mtime_ns, ctime_ns). A user can restore
    an mtime (``os.utime``) but not a ctime: writing, renaming over or touching a file sets its ctime to now."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def file_sha256(path: str | os.PathLike, use_cache: bool = True) -> str:
    """Hex sha256 of a file, streamed. Each process hashes a file on its first use; later calls in the same
    process reuse that digest (``use_cache``) while the file's :func:`_identity` is unchanged. No digest is
    trusted across processes: a file swapped between runs, even with its size and mtime restored, is rehashed."""
    path = Path(path).resolve()
    before = _identity(path.stat())
    if use_cache and before in _HASHED:
        return _HASHED[before]
    value = sha256_file(path)
    if use_cache and _identity(path.stat()) == before:  # not remembered if the file changed while being read
        _HASHED[before] = value
    return value


def verify(path: str | os.PathLike, entry: WeightsEntry | str, use_cache: bool = True) -> str:
    """Check ``path`` against the entry's sha256 (or its known prefix); return the file's full sha256."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    actual = file_sha256(path, use_cache=use_cache)
    expected = entry.sha256 or entry.sha256_prefix
    if expected and not actual.startswith(expected):
        raise ChecksumMismatchError(
            f"checksum mismatch for weights {entry.name!r} at {path}: expected sha256 {entry.expected()}, found "
            f"{actual}; the file is corrupt, truncated or a different release: delete it and run "
            f"python -m ophora.weights fetch {entry.name}")
    return actual


def load(name: str, path: str | os.PathLike | None = None) -> Any:
    """Resolve, verify and load ``name`` with its loader: a state dict (``torch.load(weights_only=True)`` or
    safetensors) or a TorchScript module (``torch.jit.load``)."""
    entry = get_entry(name)
    resolved = resolve(name, path)
    if entry.is_folder:  # loaded by its library's from_pretrained
        return resolved
    if entry.loader == "torchscript":
        return jit_load(resolved)
    if entry.loader == "safetensors":
        return safetensors.torch.load_file(str(resolved), device="cpu")
    return torch.load(resolved, map_location="cpu", weights_only=True)


def jit_load(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """``torch.jit.load`` on CPU in eval mode, without torch's TorchScript deprecation warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        return torch.jit.load(str(path), map_location="cpu").eval()


def jit_save(module: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Script ``module`` and save it atomically to ``path`` (TorchScript archive)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        scripted = torch.jit.script(module.eval())
        with atomic_path(path) as tmp:
            torch.jit.save(scripted, str(tmp))
    return Path(path)


# ---------------------------------------------------------------------------------------------------------
# Explicit download (never called by resolve or load)


def fetch(name: str, dest: str | os.PathLike | None = None, url: str | None = None, progress: bool = True) -> Path:
    """Download ``name`` into ``dest`` (default ``<cache dir>/weights``), verify, then rename into place.

    The bytes go to a temporary file beside the target; a failed download or checksum leaves nothing behind.
    ``url`` overrides the registered source (a mirror, or a ``file://`` URL).
    """
    entry = get_entry(name)
    if entry.is_shipped:
        raise OSError(f"weights {entry.name!r} ship inside the package; there is nothing to fetch:\n"
                      f"{_fetch_hint(entry)}")
    if entry.is_folder:
        raise OSError(f"weights {entry.name!r} are a folder of several files; download it with\n"
                      f"{_fetch_hint(entry)}")
    final = Path(dest).expanduser() / entry.file if dest is not None else cache_dir() / "weights" / entry.file
    source = url or entry.url
    with atomic_path(final) as tmp:
        _download(source, tmp, progress)
        verify(tmp, entry, use_cache=False)
    return final


def _download(url: str, target: Path, progress: bool) -> None:
    with urllib.request.urlopen(url) as response, open(target, "wb") as out:  # noqa: S310 - explicit user request
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress,
                  file=sys.stderr) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


# ---------------------------------------------------------------------------------------------------------
# Command line


def _status(name: str) -> str:
    try:
        return f"found    {resolve(name, check=False)}"
    except WeightsNotFoundError:
        return f"missing  (looked in {', '.join(str(p.parent) for p in candidate_paths(name))})"


def main(argv: list[str] | None = None) -> int:
    """``list`` | ``where NAME`` | ``fetch NAME [--out DIR] [--url URL]``."""
    parser = make_parser("ophora.weights", __doc__.splitlines()[0], command="weights",
                         epilog="examples:\n\n    python -m ophora.weights list\n"
                                "    python -m ophora.weights where pytorch-fid-inception\n"
                                "    python -m ophora.weights fetch pytorch-fid-inception --out DIR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,where,fetch}")
    sub.add_parser("list", formatter_class=HelpFormatter, help="every registered file and whether it is found locally",
                   description="Every registered file, its file name and whether it is found locally.")
    where = sub.add_parser("where", formatter_class=HelpFormatter, help="verified local path of NAME",
                           description="The verified local path of NAME (exit 2 with every path tried if missing).")
    where.add_argument("name", metavar="NAME", help="a registered name (see list)")
    get = sub.add_parser("fetch", formatter_class=HelpFormatter,
                         help="download NAME, verify its sha256, rename into place",
                         description="Download NAME, verify its sha256, then rename it into place (a failed "
                                     "download or checksum leaves nothing behind).")
    get.add_argument("name", metavar="NAME", help="a registered name (see list)")
    add_output(get, "target folder (default: <cache dir>/weights)", type=str, aliases=("--dest", "--output", "-o"))
    get.add_argument("--url", default=None, help="override the registered source URL (a mirror, or a file:// URL)")
    add_progress(get)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except _USER_ERRORS as error:
        print(f"error: {_user_message(error)}", file=sys.stderr)
        return 2


# What a command reports as one message, without a traceback: unknown names (KeyError), missing files and network
# failures (OSError), checksum mismatches, malformed URLs (ValueError) and broken HTTP responses.
_USER_ERRORS = (KeyError, OSError, ChecksumMismatchError, ValueError, http.client.HTTPException)


def _user_message(error: BaseException) -> str:
    """The text of a :data:`_USER_ERRORS` error (a KeyError's own message, not its quoted repr)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name in sorted({**REGISTRY, **FOLDERS}):
            print(f"{name:28s} {get_entry(name).file:40s} {_status(name)}")
    elif args.command == "where":
        print(resolve(args.name))
    else:
        print(fetch(args.name, dest=args.out, url=args.url, progress=args.progress))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
