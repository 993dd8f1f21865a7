"""The evaluation data path: video sets, a DataLoader that decodes in workers, and feature extraction
into mergeable statistics (see ``loader`` and ``extract``)."""
from benchmarks.features.extract import FailedVideoError, FrechetFeatures, RowStore, dist_info, extract, gather_objects
from benchmarks.features.loader import VideoViews, collate, default_workers, make_loader, shard_positions
from benchmarks.features.sets import VideoItem, VideoSet, load_video_set

__all__ = ["FailedVideoError", "FrechetFeatures", "RowStore", "VideoItem", "VideoSet", "VideoViews", "collate",
           "default_workers", "dist_info", "extract", "gather_objects", "load_video_set", "make_loader",
           "shard_positions"]
