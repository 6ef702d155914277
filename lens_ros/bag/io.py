"""rosbag2 read/write with ``rosbags`` (mcap and sqlite3), no ROS install and no DDS needed.

The typestore is ROS 2 Jazzy's plus our own messages (``lens_ros/msg/*``), registered from the
``msg/*.msg`` files, so bags we write carry the same type hashes (RIHS01) rosidl generates and a
real ROS 2 install (``ros2 bag``, ``rclpy.serialization``) reads them. The CDR bytes rosbags
writes are byte-identical to ``rclpy.serialization.serialize_message``.

Bags are directories (``metadata.yaml`` + ``*.mcap`` or ``*.db3``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from lens_ros.conversions.image import MessageTypes, rosbags_types

PACKAGE = "lens_ros"  #: the interface package our messages live in
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
LENS_RESULT = f"{PACKAGE}/msg/LensResult"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(OSError):
    """Raised when a bag cannot be opened, lacks a topic, or an output path is taken."""


def _msg_dirs(package: str) -> list[Path]:
    """Folders that may hold the ``.msg`` files of ``package``: for ours the source tree first,
    then ``share/<package>/msg`` of every ament prefix and of this Python's prefix."""
    dirs = [Path(__file__).resolve().parents[2] / "msg"] if package == PACKAGE else []
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return dirs + [Path(p) / "share" / package / "msg" for p in [*prefixes, sys.prefix]]


def find_msg_files(package: str = PACKAGE) -> list[Path]:
    """The ``.msg`` files of ``package``, from the first folder of :func:`_msg_dirs` with any."""
    for folder in _msg_dirs(package):
        files = sorted(folder.glob("*.msg"))
        if files:
            return files
    return []


@lru_cache(maxsize=1)
def make_typestore():
    """Jazzy's typestore with ``lens_ros/msg/*`` registered (cached and shared; types found in
    bags are added to it by :func:`ensure_type`).

    Raises:
      BagError: when the ``.msg`` files cannot be found (names where it looked).
    """
    ts = get_typestore(Stores.ROS2_JAZZY)
    files = find_msg_files()
    if not files:
        raise BagError(f"no {PACKAGE} .msg files found in {[str(d) for d in _msg_dirs(PACKAGE)]}; "
                       "run from the repository or install the package (scripts/setup_env.sh)")
    types = {}
    for f in files:
        types.update(get_types_from_msg(f.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{f.stem}"))
    ts.register(types)
    return ts


def message_types() -> MessageTypes:
    """Message classes of :func:`make_typestore`, for the shared converters."""
    return rosbags_types(make_typestore())


def ensure_type(typestore, msgtype: str, connection: Connection | None = None) -> bool:
    """Make ``msgtype`` known to ``typestore``: from the bag's stored definition, or from an
    installed ``share/<pkg>/msg/<Name>.msg``. Returns False when neither exists."""
    if msgtype in typestore.types:
        return True
    if connection is not None and connection.msgdef.format == MessageDefinitionFormat.MSG \
            and connection.msgdef.data:
        typestore.register(get_types_from_msg(connection.msgdef.data, msgtype))
        return True
    pkg, _, name = msgtype.split("/")
    for f in find_msg_files(pkg):
        if f.stem == name:
            typestore.register(get_types_from_msg(f.read_text(encoding="utf-8"), msgtype))
            return True
    return False


def storage_of(path: str | Path) -> str:
    """``mcap`` or ``sqlite3``: the storage of an existing bag directory."""
    path = Path(path)
    if any(path.glob("*.mcap")):
        return "mcap"
    if any(path.glob("*.db3")):
        return "sqlite3"
    raise BagError(f"{path} holds no .mcap or .db3 file; is it a rosbag2 directory?")


def _unreadable(path: Path, err: Exception) -> str:
    """One line saying why a bag cannot be opened."""
    why = " ".join(str(err).split())[:300]
    return (f"{path} cannot be read as a rosbag2 ({type(err).__name__}: {why}); check its "
            "metadata.yaml, or re-record the bag")


class InputBag:
    """A rosbag2 directory opened for reading; messages come in bag-time order.

    Use as a context manager. ``topics`` maps topic -> (msgtype, message count).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a rosbag2 directory (no metadata.yaml); pass the "
                           "bag folder, not the .mcap/.db3 file inside it")
        self.typestore = make_typestore()
        try:
            self._reader = Reader(self.path)
        except Exception as err:  # rosbags raises several types for a damaged metadata.yaml
            raise BagError(_unreadable(self.path, err)) from None

    def __enter__(self) -> InputBag:
        try:
            self._reader.open()
        except Exception as err:
            raise BagError(_unreadable(self.path, err)) from None
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    @property
    def connections(self) -> list[Connection]:
        """All connections (one per topic and type)."""
        return list(self._reader.connections)

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """topic -> (msgtype, message count)."""
        out: dict[str, tuple[str, int]] = {}
        for c in self._reader.connections:
            _, n = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (c.msgtype, n + c.msgcount)
        return out

    def messages(self, topics: list[str] | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, bag time ns, raw CDR) for ``topics`` (all when None), in time order."""
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        yield from self._reader.messages(connections=conns)

    def deserialize(self, raw: bytes, connection: Connection):
        """A rosbags message object from raw CDR (registers the type from the bag if needed)."""
        ensure_type(self.typestore, connection.msgtype, connection)
        return self.typestore.deserialize_cdr(raw, connection.msgtype)


class OutputBag:
    """A new rosbag2 directory (mcap or sqlite3) written with our typestore.

    Arguments:
      path: bag directory to create; it must not exist.
      storage: ``mcap`` (default) or ``sqlite3``.
    """

    def __init__(self, path: str | Path, storage: str = "mcap"):
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r} is unknown; use one of {sorted(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists; rosbag2 bags are never overwritten - choose "
                           "another output or delete it")
        self.typestore = make_typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._conns: dict[str, Connection] = {}

    def __enter__(self) -> OutputBag:
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def add_topic(self, topic: str, msgtype: str, like: Connection | None = None) -> None:
        """Declare a topic; ``like`` copies an input connection's definition, hash and QoS."""
        if topic in self._conns:
            return
        if like is not None and like.msgdef.data and like.digest:
            self._conns[topic] = self._writer.add_connection(
                topic, msgtype, msgdef=like.msgdef.data, rihs01=like.digest,
                offered_qos_profiles=like.ext.offered_qos_profiles)
            return
        if not ensure_type(self.typestore, msgtype, like):
            raise BagError(f"message type {msgtype!r} of {topic} is unknown; its .msg file must "
                           "be installed under share/ or stored in the input bag")
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write_raw(self, topic: str, time_ns: int, raw: bytes) -> None:
        """Write already-serialized CDR bytes on a declared topic."""
        self._writer.write(self._conns[topic], int(time_ns), raw)

    def write(self, topic: str, time_ns: int, msg) -> None:
        """Serialize a rosbags message object and write it on a declared topic."""
        conn = self._conns[topic]
        self._writer.write(conn, int(time_ns), self.typestore.serialize_cdr(msg, conn.msgtype))
