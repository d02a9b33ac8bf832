"""Files: atomic writes, folder locks, checkpoints (released containers, strict loading, nested training state,
content hashes) and video."""
from skiparse.host import atomic_path, remove_stale_temporaries, write_atomic

from .checkpoint import (
    DEFAULT_CONTAINER_KEYS,
    CheckpointError,
    is_json_path,
    load_state_dict_strict,
    read_checkpoint,
    read_json_config,
    read_model_checkpoint,
    save_checkpoint,
    save_state,
    tensor_digest,
    unwrap_state_dict,
)
from .lock import FolderLocked, folder_lock
from .video import frames_to_tensor, read_video, resize_center_crop, tensor_to_frames, video_rate, write_video
from .writing import writing

__all__ = [
    "DEFAULT_CONTAINER_KEYS", "CheckpointError", "FolderLocked", "atomic_path", "folder_lock", "frames_to_tensor",
    "is_json_path", "load_state_dict_strict", "read_checkpoint", "read_json_config", "read_model_checkpoint",
    "read_video", "remove_stale_temporaries", "resize_center_crop", "save_checkpoint", "save_state", "tensor_digest",
    "tensor_to_frames", "unwrap_state_dict", "video_rate", "write_atomic", "write_video", "writing",
]
