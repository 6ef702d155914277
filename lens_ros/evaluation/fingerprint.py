"""The identity of an evaluated model, stamped on every record so that results of two models are
never mixed: checkpoint path, a SHA-256 of its weight files and the inference settings.

A run that finds records with another fingerprint in its output directory refuses to resume
(:class:`ModelMismatchError`) instead of reusing them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lens_ros.core import LensError

_CHUNK = 1 << 22  # 4 MiB reads


class ModelMismatchError(LensError, ValueError):
    """The output directory holds records of another model or other inference settings."""


def weights_sha256(directory: str | Path) -> str:
    """SHA-256 over the checkpoint's safetensors files (names and bytes, sorted by name).

    Reads every weight byte once (about 20 s for the 7.5 GB LENS-3B on a local SSD).
    """
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {str(directory)!r}; is it a checkpoint?")
    h = hashlib.sha256()
    for file in files:
        h.update(file.name.encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def model_fingerprint(checkpoint: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """``{"checkpoint", "weights_sha256", "settings", "id"}``; ``id`` (16 hex digits) hashes the
    weights and settings, not the path (a moved checkpoint keeps its id).

    Arguments:
      checkpoint: the checkpoint directory.
      settings: everything else that changes predictions (inference config, reasoning, dtype).
    """
    digest = weights_sha256(checkpoint)
    body = json.dumps({"weights_sha256": digest, "settings": settings}, sort_keys=True,
                      default=str)
    return {"checkpoint": str(Path(checkpoint).resolve()), "weights_sha256": digest,
            "settings": settings, "id": hashlib.sha256(body.encode()).hexdigest()[:16]}


def check_resumable(records: list[dict], fingerprint: dict[str, Any], path: str | Path) -> None:
    """Raise ModelMismatchError when any record of ``path`` was written for another model."""
    foreign = [r for r in records if r.get("model_id") != fingerprint["id"]]
    if not foreign:
        return
    other = foreign[0]
    raise ModelMismatchError(
        f"{path} holds {len(foreign)} record(s) of another model or other inference settings "
        f"(model_id {other.get('model_id')!r}, checkpoint {other.get('checkpoint')!r}; this run "
        f"is {fingerprint['id']!r}, checkpoint {fingerprint['checkpoint']!r}); they are not "
        "reused. Give a new --output directory, or delete that records file to recompute it")
