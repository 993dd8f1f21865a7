"""Surgical-domain detectors: small networks trained on simulated (OphSim) or real (OphNet, Ophora-160K) surgery.

Three detectors, each one safetensors file whose architecture is declared inside it (the ``ophora`` metadata
entry: kind, constructor arguments, head sizes, vocabulary), so the file's sha256 covers weights and
architecture together:

- ``frame`` (:class:`FrameNet`): a 4-layer CNN on single frames with heads for phase, operation and, where the
  training data has them, instrument, iris colour and eye side, plus self-supervised capture-quality heads
  (``capture``: which capture degradation a frame went through, ``severity``: how strong; see
  :mod:`benchmarks.detectors.train_surgical`); its 128-d pooled features (the input of every head) are the
  surgical FID's features;
- ``video`` (:class:`VideoNet`): a (2+1)D CNN on 16 consecutive frames with heads for phase, operation and the
  clip's temporal order (natural, reversed, shuffled, frozen: a self-supervised head that makes the features see
  frame order); its 128-d features (the body's mean over time) plus an arrow-of-time term are the surgical
  FVD's features. The arrow-of-time branch (:class:`OrderNet`) judges, for pairs of the clip's frames, which one
  comes later; the features gain that judgement summed up over the clip (:func:`clip_order`, +1 forwards, -1
  backwards) times a stored vector (``arrow``), so a clip played backwards moves in feature space;
- ``dual`` (:class:`DualEncoder`): a video tower (a :class:`VideoNet` body) and a bag-of-words text tower over a
  vocabulary built from the training instructions, trained contrastively on instruction-clip pairs; the
  surgical CLIPScore (100 * cos) and text-to-video recall@k use its L2-normalised 64-d embeddings.

Input of every detector: frames uint8 [..., H, W, 3] -> :func:`to_input` -> float32 [..., 3, 64, 64] in [0, 1]
(bilinear with antialiasing, the same function in training and in evaluation); the networks normalise inside.

Loading (:func:`load_surgical`): ``pretrained`` (the files shipped in ``surgical_weights/``, resolved and
sha256-verified through :mod:`ophora.weights`), an explicit file verified against the same entry,
``random-init`` (the shipped architecture with seeded weights) or :class:`benchmarks.detectors.CustomWeights`
(a user's own file of the same format, e.g. trained at paper scale by ``python -m
benchmarks.detectors.train_surgical``: recorded as ``custom:<file name>``). None of them is comparable with
published FID/FVD/CLIPScore numbers: :class:`DetectorInfo` says ``comparable=False``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.detectors import DetectorInfo, custom_info, random_info, seeded_state_dict, weights_mode
from ophora.weights import file_sha256, resolve

__all__ = ["SIZE", "CLIP_LENGTH", "KINDS", "ENTRIES", "FORMAT", "ORDER_CLASSES", "to_input", "FrameNet", "VideoNet",
           "OrderNet", "order_pairs", "clip_order", "DualEncoder", "Tokenizer", "middle_clip", "build", "save_detector",
           "read_detector", "load_surgical", "frame_features", "video_features", "dual_embeddings"]

SIZE = 64  # detector input side, pixels
CLIP_LENGTH = 16  # frames per clip of the video and dual detectors
FORMAT = "ophora-surgical/1"
KINDS = ("frame", "video", "dual")
ENTRIES = {"frame": "ophsim-surgical:frame", "video": "ophsim-surgical:video", "dual": "ophsim-surgical:dual"}
ORDER_CLASSES = ("natural", "reversed", "shuffled", "frozen")
_MEAN, _STD = 0.45, 0.25


def to_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, 64, 64] in [0, 1]: x / 255, bilinear resize with antialiasing."""
    x = torch.as_tensor(frames)
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return x.reshape(*lead, 3, SIZE, SIZE).contiguous()


def middle_clip(num_frames: int, length: int = CLIP_LENGTH) -> np.ndarray:
    """Indices of ``length`` consecutive frames from the middle of a video (offset (T - length) // 2); a shorter
    video gives all its frames with the last one repeated. int64 [length]."""
    if num_frames < 1:
        raise ValueError("has no frames")
    start = max((num_frames - length) // 2, 0)
    return np.minimum(start + np.arange(length, dtype=np.int64), num_frames - 1)


def _conv(cin: int, cout: int, kernel, stride, padding) -> nn.Sequential:
    conv = nn.Conv3d if len(kernel) == 3 else nn.Conv2d
    norm = nn.BatchNorm3d if len(kernel) == 3 else nn.BatchNorm2d
    return nn.Sequential(conv(cin, cout, kernel, stride, padding, bias=False), norm(cout), nn.ReLU(inplace=True))


class _Heads(nn.Module):
    """One linear classifier per named head on the features: ``{name: logits [B, classes]}``."""

    def __init__(self, dim: int, heads: dict[str, int]):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(dim, n) for name, n in heads.items()})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(features) for name, head in self.heads.items()}


class FrameNet(nn.Module):
    """Frames float32 [B, 3, 64, 64] in [0, 1] -> features [B, 4 * width] (``features``) and head logits."""

    def __init__(self, heads: dict[str, int], width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv(3, w, (3, 3), 2, 1), _conv(w, 2 * w, (3, 3), 2, 1),
                                  _conv(2 * w, 4 * w, (3, 3), 2, 1), _conv(4 * w, 4 * w, (3, 3), 2, 1))
        self.dim = 4 * w
        self.classify = _Heads(self.dim, heads)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - _MEAN) / _STD).mean((2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.classify(self.features(x))


class OrderNet(nn.Module):
    """Two frames of one clip, ``a`` and ``b``, float32 [N, 3, 64, 64] in [0, 1] -> a logit [N] that ``b`` comes
    later than ``a``: the video detector's arrow-of-time branch. A 4-layer frame CNN (widths ``width`` ..
    4 * ``width``) reads 6 channels, one frame and 4 x the other's difference from it, so the changes between the
    two frames (a tear growing, a nucleus shrinking) stand out whatever the patient looks like; the logit is
    ``s(a, b) - s(b, a)``, so swapping the frames flips its sign exactly and a frame compared with itself gives 0."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv(6, w, (3, 3), 2, 1), _conv(w, 2 * w, (3, 3), 2, 1),
                                  _conv(2 * w, 4 * w, (3, 3), 2, 1), _conv(4 * w, 4 * w, (3, 3), 2, 1))
        self.head = nn.Linear(4 * w, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        na, nb = (a - _MEAN) / _STD, (b - _MEAN) / _STD
        both = torch.cat([torch.cat([na, 4 * (b - a)], 1), torch.cat([nb, 4 * (a - b)], 1)])
        s = self.head(self.body(both).mean((2, 3)))[:, 0]
        return s[:len(a)] - s[len(a):]


def order_pairs(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (earlier [P], later [P]) the arrow-of-time branch compares in a clip of ``length`` frames:
    every pair whose gap is one of five evenly spaced gaps up to ``length - 1`` (16 frames: gaps 3, 6, 9, 12 and
    15, 35 pairs)."""
    gaps = sorted({max(1, round(k * (length - 1) / 5)) for k in range(1, 6)})
    pairs = [(i, i + gap) for gap in gaps for i in range(length - gap)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def clip_order(order: OrderNet, x: torch.Tensor) -> torch.Tensor:
    """Clips float32 [B, T, 3, 64, 64] -> how forwards each clip plays [B] in [-1, 1]: over the frame pairs of
    :func:`order_pairs`, the mean of P(later frame judged later) - P(judged earlier) (= tanh(logit / 2)). About
    +1 for a natural clip the branch reads well, -1 played backwards, 0 shuffled or frozen."""
    early, late = (torch.from_numpy(i) for i in order_pairs(x.shape[1]))
    a, b = x[:, early].flatten(0, 1), x[:, late].flatten(0, 1)
    return torch.tanh(order(a, b) / 2).view(x.shape[0], -1).mean(1)


class VideoNet(nn.Module):
    """Clips float32 [B, T, 3, 64, 64] in [0, 1] (T = 16) -> features [B, 4 * width] and head logits.

    (2+1)D: each stage a spatial 1x3x3 convolution then a temporal 3x1x1 one; time is halved in the last
    three stages (16 -> 2), space by every stage (64 -> 4); features are the mean over what remains, or, with
    ``time_difference``, a linear map of [that mean, the later half's mean minus the earlier half's].

    With ``order_width`` an arrow-of-time branch is added: an :class:`OrderNet` compares frame pairs of the clip
    (which of the two comes later, trained on the frame order of the training runs), :func:`clip_order` sums it
    up as one number in [-1, 1], and the features gain ``order * arrow`` (``arrow``: a stored vector, a constant
    direction whose length is fixed by the training data; see
    :func:`benchmarks.detectors.train_surgical.arrow_vector`). A clip played backwards moves by about twice
    ``order * arrow``; the heads read the features without that term, so it changes no classification.
    """

    def __init__(self, heads: dict[str, int], width: int = 32, time_difference: bool = False,
                 order_width: int = 0):
        super().__init__()
        w = width
        stages, cin = [], 3
        for k, cout in enumerate((w // 2, w, 2 * w, 4 * w)):
            t_stride = 1 if k == 0 else 2
            stages += [_conv(cin, cout, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
                       _conv(cout, cout, (3, 1, 1), (t_stride, 1, 1), (1, 0, 0))]
            cin = cout
        self.body = nn.Sequential(*stages)
        self.dim = 4 * w
        self.time_difference = bool(time_difference)
        # [mean over time, later half - earlier half] -> dim: the difference changes sign when the clip is reversed
        self.fuse = nn.Linear(8 * w, 4 * w) if self.time_difference else None
        self.classify = _Heads(self.dim, heads)
        self.order = OrderNet(order_width) if order_width else None
        if self.order is not None:
            self.register_buffer("arrow", torch.zeros(self.dim))

    def body_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (2+1)D body's features [B, dim] (the heads' input)."""
        y = self.body(((x - _MEAN) / _STD).transpose(1, 2))  # [B, C, T', H', W']
        if self.fuse is None:
            return y.mean((2, 3, 4))
        s = y.mean((3, 4))  # [B, C, T']
        half = s.shape[2] // 2
        late = s[:, :, half:].mean(2)
        early = s[:, :, :half].mean(2) if half else late
        return self.fuse(torch.cat([s.mean(2), late - early], 1))

    def clip_order(self, x: torch.Tensor) -> torch.Tensor:
        """How forwards each clip plays [B] in [-1, 1] (:func:`clip_order`; needs the arrow-of-time branch)."""
        if self.order is None:
            raise ValueError("this video detector has no arrow-of-time branch (order_width 0)")
        return clip_order(self.order, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body_features(x)
        if self.order is None:
            return f
        return f + self.clip_order(x)[:, None] * self.arrow

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.classify(self.body_features(x))


class Tokenizer:
    """Lower-case words (``[a-z0-9]+``) to ids; id 0 is every word outside ``vocab``."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)
        self.ids = {word: i + 1 for i, word in enumerate(self.vocab)}

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 1) -> "Tokenizer":
        """The vocabulary of ``texts``: words seen at least ``min_count`` times, sorted."""
        counts: dict[str, int] = {}
        for text in texts:
            for word in cls.words(text):
                counts[word] = counts.get(word, 0) + 1
        return cls(sorted(w for w, n in counts.items() if n >= min_count))

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids int64 [total words], offsets int64 [B]) for ``nn.EmbeddingBag``; an empty text is one unknown."""
        ids, offsets = [], []
        for text in texts:
            offsets.append(len(ids))
            ids.extend([self.ids.get(w, 0) for w in self.words(text)] or [0])
        return torch.tensor(ids, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(self.words(t)) for t in texts]


class DualEncoder(nn.Module):
    """A video tower (:class:`VideoNet` body + projection) and a text tower (mean of word embeddings + MLP),
    both to L2-normalised embeddings [B, dim]; ``logit_scale`` is the contrastive temperature's log inverse."""

    def __init__(self, vocab: Sequence[str], width: int = 32, dim: int = 64, text_width: int = 96,
                 time_difference: bool = False):
        super().__init__()
        self.tokenizer = Tokenizer(vocab)
        self.video = VideoNet({}, width, time_difference)
        self.video_proj = nn.Linear(self.video.dim, dim)
        self.embed = nn.EmbeddingBag(len(self.tokenizer.vocab) + 1, text_width, mode="mean")
        self.text_proj = nn.Sequential(nn.Linear(text_width, 2 * text_width), nn.ReLU(), nn.Linear(2 * text_width, dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.dim = dim

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_proj(self.video.features(x)), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        ids, offsets = self.tokenizer(texts)
        device = self.logit_scale.device
        return F.normalize(self.text_proj(self.embed(ids.to(device), offsets.to(device))), dim=-1)

    @property
    def context_length(self) -> int:
        return 10**6  # a bag of words reads every word: nothing is truncated

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Words of each text (none is ever truncated)."""
        return self.tokenizer.token_counts(texts)


_CLASSES = {"frame": FrameNet, "video": VideoNet, "dual": DualEncoder}


def build(kind: str, config: dict[str, Any]) -> nn.Module:
    """The detector ``kind`` (frame, video, dual) with constructor arguments ``config``, in eval mode."""
    if kind not in _CLASSES:
        raise ValueError(f"unknown surgical detector kind {kind!r}; expected one of {KINDS}")
    return _CLASSES[kind](**config).eval()


def save_detector(module: nn.Module, kind: str, config: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``module``'s weights and its architecture (kind, ``config``) as one safetensors file.

    The metadata is one entry (``ophora``: JSON with sorted keys), so the file's bytes depend only on the
    weights and the config: equal models give equal files (and sha256)."""
    from ophora.data.atomic import atomic_path

    meta = json.dumps({"format": FORMAT, "kind": kind, "config": config}, sort_keys=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={"ophora": meta})
    return Path(path)


def read_detector(path: str | os.PathLike, kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(module in eval mode, its metadata) from a file :func:`save_detector` wrote; with ``kind``, a file of
    another kind is refused, naming both."""
    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("ophora", "null"))
    except (OSError, ValueError, safetensors.SafetensorError) as err:
        raise ValueError(f"{path}: not a surgical detector file (safetensors written by "
                         f"python -m benchmarks.detectors.train_surgical): {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: safetensors without the {FORMAT!r} metadata entry 'ophora'; a surgical detector "
                         "file declares its architecture (write it with benchmarks.detectors.surgical.save_detector)")
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{path}: a {meta['kind']!r} surgical detector, but this protocol needs a {kind!r} one")
    module = build(meta["kind"], meta["config"])
    module.load_state_dict(safetensors.torch.load_file(str(path), device="cpu"))
    return module.eval(), meta


def load_surgical(kind: str, weights: Any = "pretrained", seed: int = 0,
                  protocol: str = "") -> tuple[nn.Module, DetectorInfo]:
    """The ``kind`` detector (frame, video, dual) and its :class:`DetectorInfo` (never comparable).

    ``weights``: ``"pretrained"`` (the shipped file, verified through the registry), a file path (verified
    against the same registry entry: other bytes are refused), ``"random-init"`` (the shipped architecture,
    weights seeded by ``seed``) or :class:`CustomWeights` (a user's file of this format, not verified).
    """
    entry, mode = ENTRIES[kind], weights_mode(weights)
    detector = f"ophsim-surgical-{kind}"
    if mode == "custom":
        module, _ = read_detector(weights.path, kind)
        return module, custom_info(detector, weights.path, protocol)
    if mode == "random-init":
        shipped, _ = read_detector(resolve(entry), kind)
        module = shipped
        module.load_state_dict(seeded_state_dict(shipped.state_dict(), seed))
        return module.eval(), random_info(detector, f"surgical-{kind}", seed, module, protocol)
    path = resolve(entry, None if mode == "pretrained" else Path(weights))
    module, _ = read_detector(path, kind)
    info = DetectorInfo(detector=detector, identifier=f"{entry}:{path.name}", sha256=file_sha256(path),
                        comparable=False, protocol=protocol, path=str(path))
    return module, info


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.inference_mode()
def frame_features(model: FrameNet, x: torch.Tensor) -> torch.Tensor:
    """Features float32 [N, 128] of frames float32 [N, 3, 64, 64] (:func:`to_input`)."""
    return model.features(x.to(_device(model))).float().cpu()


@torch.inference_mode()
def video_features(model: VideoNet, x: torch.Tensor) -> torch.Tensor:
    """Features float32 [B, 128] of clips float32 [B, 16, 3, 64, 64] (:func:`to_input`)."""
    return model.features(x.to(_device(model))).float().cpu()


@torch.inference_mode()
def dual_embeddings(model: DualEncoder, x: torch.Tensor, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(video embeddings [B, 64], text embeddings [B, 64]), L2-normalised, of clips [B, 16, 3, 64, 64] and
    one text per clip."""
    return model.encode_video(x.to(_device(model))).float().cpu(), model.encode_text(list(texts)).float().cpu()

