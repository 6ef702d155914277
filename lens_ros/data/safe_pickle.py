"""A restricted unpickler for dataset pickles (``refs(unc).p`` and the like).

The RefCOCO family ships its referring expressions as a pickle. A pickle can name any importable
callable and call it while loading (``os.system``, ``eval``, ...), so lens_ros never passes one
to :func:`pickle.load`. :func:`safe_load` admits only what the refs files hold: dicts, lists,
tuples, strings, bytes, numbers, booleans and None (built by pickle opcodes without any import),
plus ``set``/``frozenset``/``OrderedDict`` and ``_codecs.encode``, which protocols 0-2 encode
as a call (sets, bytes). Every other
global is refused before it is imported, with :class:`UnsafePickleError`.

Model weights are never pickled here: checkpoints are safetensors (see ``lens_ros.model``).
"""
from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
from typing import Any, BinaryIO

from lens_ros.core import LensError

def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it for bytes: (str, "latin1"); nothing else."""
    if not isinstance(obj, str) or not isinstance(encoding, str) \
            or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591") \
            or errors != "strict":
        raise UnsafePickleError(f"the pickle calls _codecs.encode({type(obj).__name__}, "
                                f"{encoding!r}, {errors!r}); dataset pickles only use it as "
                                "encode(str, 'latin1') for bytes")
    return codecs.encode(obj, "latin-1")


#: (module, name) -> object a dataset pickle may reference (Python 3 and Python 2 spellings).
ALLOWED_GLOBALS = {
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,  # how protocols 0-2 write Python 3 bytes
}


class UnsafePickleError(LensError, pickle.UnpicklingError):
    """Raised when a pickle references a global outside :data:`ALLOWED_GLOBALS`."""


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` admits only :data:`ALLOWED_GLOBALS`.

    Python 2 byte strings are decoded as UTF-8 (bad bytes replaced), which is what the refs
    files of RefCOCO/RefCOCO+/RefCOCOg contain.
    """

    def __init__(self, file: BinaryIO, source: str = "<pickle>"):
        super().__init__(file, encoding="utf-8", errors="replace")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        raise UnsafePickleError(
            f"{self._source}: the pickle references {module}.{name}, which is not a plain "
            "container, string or number; refusing to load it (it could run code). Dataset "
            "pickles must contain only dicts, lists, tuples, str and numbers: re-export the file "
            "from its original source, or convert it to JSON.")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self._source}: the pickle uses a persistent id ({pid!r}); dataset pickles never "
            "need one. Re-export the file from its original source.")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; raises :class:`UnsafePickleError`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError as err:
        if not str(err).startswith(source):
            raise UnsafePickleError(f"{source}: {err}") from None
        raise
    except Exception as err:  # a malformed pickle can raise nearly any type: one error type out
        raise UnsafePickleError(f"{source}: not a readable pickle ({type(err).__name__}: "
                                f"{err}); download it again") from None


def safe_load(path: str | os.PathLike) -> Any:
    """Read the pickle file at ``path`` with :class:`RestrictedUnpickler`.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      UnsafePickleError: the pickle references a forbidden global or is corrupt.
    """
    with open(path, "rb") as fh:
        return safe_loads(fh.read(), source=str(path))
