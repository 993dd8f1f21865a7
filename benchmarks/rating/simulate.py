"""Simulated raters, to try a study end to end before real experts rate it (never a substitute for them).

``python -m benchmarks.rating.simulate LINKS.tsv [--noise 0.5] [--seed 0]`` reads the ``rater<TAB>link`` lines
that ``init`` prints and lets each rater work through its link over HTTP, seeing only what a browser sees: the
page and the blinded video. A simulated rater scores from two measurements of the video it is served: sharpness
(mean variance of the Laplacian of the grey frames; log-scaled between 150 and 1500 for scores 1 to 5) for visual
realism, anatomical fidelity and instrument realism; steadiness (mean absolute change between consecutive
frames, log-scaled between 40 and 2 grey levels) for temporal consistency; their mean for the other criteria.
Each rater adds its own bias (uniform +-0.3) and Gaussian noise (``--noise``) before rounding to the scale.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from pathlib import Path

import cv2
import httpx
import numpy as np

from ophora.data.video import read_video

__all__ = ["video_scores", "simulate_rater", "main"]

SHARPNESS = {"visual_realism", "anatomical_fidelity", "instrument_realism"}
STEADINESS = {"temporal_consistency"}


def _scale(value: float, worst: float, best: float) -> float:
    """1 at ``worst``, 5 at ``best``, on a log scale, clipped."""
    position = (math.log(value) - math.log(worst)) / (math.log(best) - math.log(worst))
    return 1 + 4 * min(1.0, max(0.0, position))


def video_scores(path: Path, criteria: list[str]) -> dict[str, float]:
    """Unrounded 1-5 scores of the video at ``path`` for each criterion (see the module docstring)."""
    grey = read_video(path).astype(np.float32).mean(axis=-1)
    sharpness = float(np.mean([cv2.Laplacian(frame, cv2.CV_32F).var() for frame in grey]))
    change = float(np.abs(np.diff(grey, axis=0)).mean()) if len(grey) > 1 else 0.0
    sharp, steady = _scale(max(sharpness, 1e-3), 150, 1500), _scale(max(change, 1e-3), 40, 2)
    return {key: sharp if key in SHARPNESS else steady if key in STEADINESS else (sharp + steady) / 2
            for key in criteria}


def simulate_rater(link: str, noise: float, seed: int) -> int:
    """Rate every video behind ``link``; return how many ratings the server acknowledged."""
    rng = np.random.default_rng(seed)
    bias = rng.uniform(-0.3, 0.3)
    base = link.split("/r/", 1)[0]
    saved = 0
    with httpx.Client(base_url=base, timeout=60.0) as client, tempfile.TemporaryDirectory() as folder:
        client.get(link[len(base):])
        while (page := client.get("/rate", follow_redirects=True)).url.path != "/finish":
            if page.status_code != 200:
                raise RuntimeError(f"{page.url}: HTTP {page.status_code} (revoked link?)")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            criteria = re.findall(r'name="score_([a-z0-9_]+)" value="1"', page.text)
            public_id = page.url.path.rsplit("/", 1)[-1]
            video = Path(folder) / "video.mp4"
            video.write_bytes(client.get(f"/video/{public_id}").content)
            values = video_scores(video, criteria)
            form = {"csrf": csrf, "comment": ""}
            for key, value in values.items():
                form[f"score_{key}"] = str(int(np.clip(round(value + bias + rng.normal(0, noise)), 1, 5)))
            answer = client.post(page.url.path, data=form)
            if answer.status_code != 303:
                raise RuntimeError(f"{page.url}: the rating was refused (HTTP {answer.status_code})")
            saved += 1
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rating.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("links", help="the rater<TAB>link lines that init printed")
    parser.add_argument("--noise", type=float, default=0.5, help="each score's Gaussian noise (default 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    lines = [line.split("\t") for line in Path(args.links).read_text().splitlines() if "\t" in line]
    for index, (rater, link) in enumerate(lines):
        print(f"{rater}: {simulate_rater(link.strip(), args.noise, args.seed + index)} ratings saved", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
