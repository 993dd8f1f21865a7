"""The evaluation data path: a DataLoader that decodes video sets (:mod:`ophora.data.sets`) in workers, and
feature extraction into mergeable statistics (see ``loader`` and ``extract``)."""
from benchmarks.features.extract import FailedVideoError, RowStore, dist_info, extract, gather_objects
from benchmarks.features.loader import VideoViews, collate, default_workers, make_loader, shard_positions

__all__ = ["FailedVideoError", "RowStore", "VideoViews", "collate",
           "default_workers", "dist_info", "extract", "gather_objects", "make_loader",
           "shard_positions"]
