"""Malformed dataset pickles: the restricted unpickler returns a value or raises its own
``UnsafePickleError``, never another exception type (hypothesis-generated corruptions)."""
from __future__ import annotations

import collections
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lens_ros.data.safe_pickle import UnsafePickleError, safe_loads

_SAMPLE = {"refs": [{"sent_ids": [1, 2], "sentences": [{"raw": "the mug", "tokens": ["mug"]}],
                     "bbox": (1.5, 2.0, 3.0, 4.0), "flag": None, "blob": b"\x00\xff"}],
           "set": {1, 2}, "ordered": collections.OrderedDict(a=1)}
VALID = [pickle.dumps(_SAMPLE, protocol=p) for p in range(0, pickle.HIGHEST_PROTOCOL + 1)]


def _load_or_refuse(data: bytes) -> None:
    try:
        safe_loads(data)
    except UnsafePickleError as err:
        assert str(err).startswith("<bytes>")


@pytest.mark.parametrize("codec", ["rot13", "no-such-codec", "hex", "zlib", "utf-8"])
def test_codecs_encode_with_another_codec_is_refused_by_the_loader(codec):
    # protocol 0 spelling of _codecs.encode("abc", codec)
    data = f"c_codecs\nencode\n(Vabc\nV{codec}\ntR.".encode()
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        safe_loads(data)


def test_codecs_encode_latin1_still_loads_python2_era_bytes():
    assert safe_loads(pickle.dumps(b"\x00\xff", protocol=2)) == b"\x00\xff"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(base=st.sampled_from(VALID), data=st.data())
def test_mutated_pickles_load_or_raise_the_loaders_error(base, data):
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        i = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del buf[i:i + data.draw(st.integers(1, 16))]
        elif op == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=12))
        else:
            buf[i:i] = buf[i:i + data.draw(st.integers(1, 32))]
    _load_or_refuse(bytes(buf))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_random_bytes_load_or_raise_the_loaders_error(data):
    _load_or_refuse(data)
