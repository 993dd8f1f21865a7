"""Resolution filter: frame size from container metadata (no decoding)."""
from __future__ import annotations

from ophora.curation.config import ResolutionConfig
from ophora.curation.stage import ClipItem, Stage, Verdict
from ophora.data.video import VideoDecodeError, probe

__all__ = ["ResolutionStage"]


class ResolutionStage(Stage):
    """Drops clips smaller than ``min_width x min_height`` and clips whose container cannot be read.

    Scores: width, height (pixels), fps (frames per second), frames, duration (seconds). Fills ``item.info``.
    """

    name = "resolution"

    def __init__(self, config: ResolutionConfig):
        super().__init__(config)

    def check(self, item: ClipItem) -> Verdict:
        try:
            info = probe(item.path)
        except VideoDecodeError as err:
            return self.verdict(False, f"unreadable video: {err.reason}", error=True)
        item.info = info
        scores = {"width": info.width, "height": info.height, "fps": round(info.fps, 3),
                  "frames": info.num_frames, "duration": round(info.duration, 3)}
        need_long = max(self.config.min_width, self.config.min_height)
        need_short = min(self.config.min_width, self.config.min_height)
        if max(info.width, info.height) < need_long or min(info.width, info.height) < need_short:
            return self.verdict(False, f"low resolution: {info.width}x{info.height} is below "
                                       f"{self.config.min_width}x{self.config.min_height}", scores)
        return self.verdict(True, "ok", scores)
