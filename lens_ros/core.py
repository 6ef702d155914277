"""Types shared by every part of lens_ros: the status enum, the error classes and the result type.

Defined once here and used by the model, the node, the bag tools, the evaluator and the demo.
``msg/LensResult.msg`` mirrors :class:`Status` as ``STATUS_*`` constants (a test checks they agree).
Nothing here imports torch or rclpy.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Status(enum.IntEnum):
    """Outcome of one segmentation request (mirrored by ``LensResult.STATUS_*``)."""

    OK = 0  #: mask, box and reasoning are valid
    NO_TARGET = 1  #: the no-target gate fired: the object is judged absent, mask is empty
    BAD_IMAGE = 2  #: the frame could not be turned into an HxWx3 RGB array
    BAD_COMMAND = 3  #: empty, whitespace-only, over-long or undecodable command
    MODEL_ERROR = 4  #: the model raised or its output could not be used
    TIMEOUT = 5  #: the request waited or ran longer than its deadline
    DROPPED = 6  #: the bounded command queue overflowed and this (oldest) command was dropped
    CANCELED = 7  #: the request was canceled (action cancel); partial reasoning may be present
    NO_DEPTH = 8  #: segmentation valid but no valid depth under the mask (3D requested)
    TRACKED = 9  #: mask and box come from the tracker, not from a new LENS call
    NO_IMAGE = 10  #: no frame available yet, or the newest one is too old
    NOT_READY = 11  #: the model is not loaded

    @property
    def is_success(self) -> bool:
        """True when the mask/box fields carry a valid segmentation."""
        return self in (Status.OK, Status.TRACKED, Status.NO_DEPTH)


class LensError(Exception):
    """Base class of every error lens_ros raises on purpose; ``status`` is what a result reports."""

    status: Status = Status.MODEL_ERROR


class BadImageError(LensError, ValueError):
    """Raised when a frame cannot be turned into an HxWx3 uint8 RGB array."""

    status = Status.BAD_IMAGE


class BadCommandError(LensError, ValueError):
    """Raised when a command is empty, whitespace-only, too long or not valid text."""

    status = Status.BAD_COMMAND


def check_command_characters(command: str) -> str:
    """``command`` unchanged, or ``BadCommandError`` naming the first character that no command
    may hold: U+FFFD (bytes that were not UTF-8: rclpy decodes them with "replace") or a control
    character (C0 other than tab/newline/carriage return, DEL, C1).

    The one character check of a command, shared by ``LensSegmenter.check_command`` (so by
    lens_node, its action and ``lens-bag run``) and the fixed ``lens-bag run --command``.
    """
    for i, ch in enumerate(command):
        if ch == "\ufffd":
            raise BadCommandError(f"command is not valid UTF-8 text (U+FFFD replacement "
                                  f"character at position {i}); publish UTF-8 encoded text")
        code = ord(ch)
        if (code < 32 and ch not in "\t\n\r") or 127 <= code < 160:
            raise BadCommandError(f"command holds the control character {ch!r} at position {i}; "
                                  "send printable text (tab and newline are allowed)")
    return command


class ModelError(LensError, RuntimeError):
    """Raised when the model fails or produces output that cannot be used."""

    status = Status.MODEL_ERROR


class CheckpointError(LensError, OSError):
    """Raised when a checkpoint directory is missing, incomplete or does not match the model.

    The message names the missing file or the mismatched/missing/unexpected parameter keys.
    """

    status = Status.NOT_READY


class NotReadyError(LensError, RuntimeError):
    """Raised when a request needs state that is not there yet (no model, no image set)."""

    status = Status.NOT_READY


class CanceledError(LensError):
    """Raised inside a running request when its cancel check returns True."""

    status = Status.CANCELED


class NoDepthError(LensError, ValueError):
    """Raised when a 3D target was requested but no valid depth lies under the mask."""

    status = Status.NO_DEPTH


@dataclass
class Timings:
    """Wall-clock milliseconds of the stages of one request."""

    encode_ms: float = 0.0  #: image preprocessing + SAM image encoder (0 when features were cached)
    generate_ms: float = 0.0  #: LLM text generation (incl. the vision tower on the first call)
    mask_ms: float = 0.0  #: query pass + connector + SAM 2 mask decoder + upsampling
    total_ms: float = 0.0  #: whole request


@dataclass
class Segmentation:
    """The result of one command on one image, or the error that replaced it.

    Attributes:
      command (str): the command as segmented (whitespace-trimmed).
      mask (np.ndarray): HxW bool, True on the target, in input-image pixels. All False on error.
      box (tuple | None): (x1, y1, x2, y2) float pixels of the input image, parsed from the
        ``<answer>`` text and rescaled per axis; None when the answer has no box.
      score (float): SAM 2 predicted IoU of the mask, in [0, 1].
      object_score (float): SAM 2 object-score logit (> 0: an object is believed present).
      reasoning (str): text inside ``<think>...</think>``; empty without reasoning.
      answer (str): the raw generated text (prompt excluded, special tokens removed).
      status (Status): OK, or why the mask is not valid.
      error (str): human-readable reason when the status is not a success.
      truncated (bool): generation hit ``max_new_tokens`` before the end-of-turn token.
      timings (Timings): per-stage milliseconds.
      point (np.ndarray | None): (3,) float target centre in the camera optical frame, metres.
      extent (np.ndarray | None): (3,) float target size along camera x, y, z, metres.
    """

    command: str
    mask: np.ndarray
    box: tuple[float, float, float, float] | None = None
    score: float = 0.0
    object_score: float = 0.0
    reasoning: str = ""
    answer: str = ""
    status: Status = Status.OK
    error: str = ""
    truncated: bool = False
    timings: Timings = field(default_factory=Timings)
    point: np.ndarray | None = None
    extent: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """True when ``mask`` and ``box`` carry a valid segmentation."""
        return self.status.is_success

    @classmethod
    def failure(cls, command: str, status: Status, error: str,
                image_shape: tuple[int, int] = (0, 0), **fields) -> "Segmentation":
        """A result that carries only an error: empty mask of ``image_shape`` (H, W)."""
        h, w = (int(image_shape[0]), int(image_shape[1])) if len(image_shape) >= 2 else (0, 0)
        return cls(command=command, mask=np.zeros((max(h, 0), max(w, 0)), dtype=bool),
                   status=Status(status), error=error, **fields)

    @classmethod
    def from_error(cls, err: BaseException, command: str,
                   image_shape: tuple[int, int] = (0, 0), **fields) -> "Segmentation":
        """Turn an exception into a failure result; unexpected exceptions become MODEL_ERROR."""
        status = err.status if isinstance(err, LensError) else Status.MODEL_ERROR
        text = str(err) if isinstance(err, LensError) else f"{type(err).__name__}: {err}"
        return cls.failure(command, status, text, image_shape, **fields)
