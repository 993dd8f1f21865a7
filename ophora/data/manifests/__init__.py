"""Typed, validated readers and writers for every dataset layout the suite reads or writes.

One module per format:

- ``instructions`` -- Ophora-160K instruction set: ``<root>/<name>.csv`` with header ``clip id,instruction``
  and clips at ``<root>/clips/<clip id>.mp4`` (Hugging Face General-Medical-AI/Ophora-160K).
- ``raw`` -- OphVL-like raw narrated set: CSV ``clip_id,caption,source_video,start,end,path`` (seconds; path
  relative to the dataset root).
- ``cogvideox`` -- CogVideoX fine-tuning layout: ``<root>/prompts.txt`` and ``<root>/videos.txt``, line i of
  each describing the same video (diffusers examples/cogvideo, cogvideox-factory).
- ``ophnet`` -- OphNet2024 labelled clips: CSV
  ``video_id,start,end,split,surgery_id,phase_id[,operation_id][,segment_path]`` returned as a typed
  ``pandas.DataFrame``; the real OphNet2024 CSVs ship with it (:func:`bundled_ophnet_csv`).
- ``generated`` -- generated-video folders: ``<folder>/manifest.jsonl``, one JSON object per video.

``_common`` holds what they share: :class:`ManifestError`, the path checks and the CSV table reader
(:func:`read_csv_table`, also used for other small CSVs such as prompt mappings).

Every problem raises :class:`ManifestError` naming the file, the 1-based data row, the line of the file where
that row starts, and the column or field. The first problem raises; nothing is dropped silently. Paths inside
manifests are relative to the dataset root; readers return absolute :class:`pathlib.Path`s.

Import from this package (``from ophora.data import manifests``), not from the submodules.
"""
from ophora.data.manifests._common import CsvTable, ManifestError, PathLike, read_csv_table
from ophora.data.manifests.cogvideox import CogVideoXItem, read_cogvideox_set, write_cogvideox_set
from ophora.data.manifests.generated import (
    MANIFEST_NAME,
    GeneratedVideo,
    append_generated,
    read_generated,
    write_generated,
)
from ophora.data.manifests.instructions import (
    INSTRUCTION_COLUMNS,
    InstructionClip,
    read_instruction_set,
    write_instruction_set,
)
from ophora.data.manifests.ophnet import (
    OPHNET2024_DIR,
    OPHNET2024_FILES,
    OPHNET_LABELS,
    OPHNET_OPTIONAL,
    OPHNET_REQUIRED,
    OPHNET_SPLITS,
    bundled_ophnet_csv,
    class_counts,
    read_ophnet_csv,
    split_counts,
    write_ophnet_csv,
)
from ophora.data.manifests.raw import RAW_COLUMNS, RawClip, read_raw_set, write_raw_set

__all__ = [
    "ManifestError",
    "PathLike",
    "CsvTable",
    "read_csv_table",
    "INSTRUCTION_COLUMNS",
    "InstructionClip",
    "read_instruction_set",
    "write_instruction_set",
    "RAW_COLUMNS",
    "RawClip",
    "read_raw_set",
    "write_raw_set",
    "CogVideoXItem",
    "read_cogvideox_set",
    "write_cogvideox_set",
    "OPHNET_REQUIRED",
    "OPHNET_OPTIONAL",
    "OPHNET_LABELS",
    "OPHNET_SPLITS",
    "OPHNET2024_DIR",
    "OPHNET2024_FILES",
    "bundled_ophnet_csv",
    "read_ophnet_csv",
    "write_ophnet_csv",
    "split_counts",
    "class_counts",
    "GeneratedVideo",
    "MANIFEST_NAME",
    "read_generated",
    "append_generated",
    "write_generated",
]
