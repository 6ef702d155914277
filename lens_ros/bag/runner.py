"""``lens-bag run``: run LENS over a rosbag2 offline, frame by frame, without DDS.

For every frame of the image topic (``sensor_msgs/Image`` in any supported encoding, or
``sensor_msgs/CompressedImage``) the runner takes the current command (from a ``std_msgs/String``
topic of the bag, a fixed ``--command``, or spoken commands recognised in an ``AudioChunk`` topic
of the bag, see :mod:`lens_ros.bag.speech_commands`), calls :class:`~lens_ros.model.LensSegmenter`
directly, and writes:

  OUT/bag/          the input topics plus ``result`` (LensResult), ``mask`` (mono8) and
                    ``debug_image`` (rgb8 overlay), readable by rosbags and by a ROS 2 install
  OUT/frames.jsonl  one record per input frame: a result, an error, or SKIPPED with the reason
  OUT/frames.csv    the same, one row per frame (stamp, command, status, box, score, latency)
  OUT/overlays.png  a strip of overlays across the bag (OUT/overlays.mp4 with ``video``)
  OUT/summary.json  counts per status, latency, frames per second
  OUT/transcripts.jsonl  with an audio topic: one record per utterance, accepted or not (the
                    output bag then also has ``speech/transcript`` and the spoken ``command``)

Records are flushed as the run goes; a re-run with the same settings reuses every recorded frame
(no model call) and computes the rest, then rewrites the bag (rosbag2 files cannot be appended).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lens_ros.bag.io import (COMPRESSED_IMAGE, IMAGE, LENS_RESULT, STRING, BagError, InputBag,
                             OutputBag, message_types, storage_of)
from lens_ros.bag.reports import VideoSink, record_to_segmentation, write_csv, write_strip
from lens_ros.bag.speech_commands import (TRANSCRIPT, AudioCommandReader, assign_to_frames,
                                          load_recognizer, transcript_message)
from lens_ros.core import (BadCommandError, BadImageError, LensError, Segmentation, Status,
                           check_command_characters)
from lens_ros.evaluation.evaluator import read_records
from lens_ros.data.masks import encode_rle
from lens_ros.bag.frames import decode_frame
from lens_ros.conversions.image import make_header, mask_to_image, rgb_to_image, stamp_to_ns
from lens_ros.conversions.result import segmentation_to_result
from lens_ros.visualize import overlay

log = logging.getLogger(__name__)
SKIPPED = "SKIPPED"  #: record status of a frame on which the model was not run (reason in error)


@dataclass
class RunConfig:
    """Settings of one ``lens-bag run`` (the fields that change records are checked on resume)."""

    image_topic: str | None = None  #: Image/CompressedImage topic; None = the only non-depth one
    command_topic: str | None = None  #: std_msgs/String topic of the bag giving the command
    command: str | None = None  #: fixed command for every selected frame (instead of a topic)
    audio_topic: str | None = None  #: AudioChunk topic of the bag with spoken commands
    speech_config: str = ""  #: speech_node parameter file for audio_topic; "" = its defaults
    transcript_topic: str = "/lens/speech/transcript"  #: output Transcript topic ("" = none)
    spoken_command_topic: str = "/lens/command"  #: output String of spoken commands ("" = none)
    every_n_frames: int = 1  #: run on every N-th frame (others are recorded as SKIPPED)
    every_seconds: float = 0.0  #: if > 0: run when this much bag time passed since the last run
    reasoning: bool | None = None  #: think before answering; None = the checkpoint's default
    result_topic: str = "/lens/result"  #: output LensResult topic
    mask_topic: str = "/lens/mask"  #: output mono8 mask topic (successful results only)
    debug_topic: str = "/lens/debug_image"  #: output rgb8 overlay topic ("" = none)
    storage: str | None = None  #: output storage, mcap or sqlite3; None = as the input
    strip_frames: int = 8  #: overlays in the PNG strip (0 = no strip)
    video: bool = False  #: also write OUT/overlays.mp4 (cv2 mp4v) of every frame's overlay
    max_frames: int | None = None  #: stop after this many image frames (quick looks)

    def __post_init__(self):
        if sum(x is not None for x in (self.command_topic, self.command, self.audio_topic)) != 1:
            raise ValueError("give exactly one command source: command_topic (a std_msgs/String "
                             "topic in the bag), command (a fixed text) or audio_topic (an "
                             "AudioChunk topic in the bag with spoken commands)")
        if self.command is not None:
            if not self.command.strip():
                raise ValueError("--command is empty; give the text to segment, e.g. --command "
                                 "'the red mug'")
            check_command_characters(self.command)
        if self.speech_config and self.audio_topic is None:
            raise ValueError(f"speech_config={self.speech_config!r} needs audio_topic")
        if self.speech_config and not Path(self.speech_config).is_file():
            raise ValueError(f"speech_config {self.speech_config!r} is not a file; give a "
                             "speech_node parameter file like config/speech.yaml")
        if self.every_n_frames < 1:
            raise ValueError(f"every_n_frames={self.every_n_frames}; use 1 or more")
        if self.every_seconds < 0:
            raise ValueError(f"every_seconds={self.every_seconds}; use 0 (off) or more")

    def fingerprint(self) -> dict:
        """The fields that decide what each frame's record is."""
        keys = ("image_topic", "command_topic", "command", "every_n_frames", "every_seconds",
                "reasoning", "max_frames") + (("audio_topic", "speech_config")
                                              if self.audio_topic is not None else ())
        return {k: v for k, v in asdict(self).items() if k in keys}


def _pick_image_topic(bag: InputBag, wanted: str | None) -> tuple[str, str]:
    images = {t: mt for t, (mt, _) in bag.topics.items() if mt in (IMAGE, COMPRESSED_IMAGE)}
    if wanted is not None:
        if wanted not in images:
            raise BagError(f"{wanted} is not an Image/CompressedImage topic of {bag.path}; "
                           f"image topics: {sorted(images)}")
        return wanted, images[wanted]
    images = {t: mt for t, mt in images.items() if bag.topics[t][1] > 0}  # declared, never sent
    if len(images) > 1:  # a depth stream is not a camera image: leave it out of the default
        images = {t: mt for t, mt in images.items() if "depth" not in t.lower()} or images
    if not images:
        raise BagError(f"{bag.path} has no Image or CompressedImage topic with messages (topics: "
                       f"{ {t: mt for t, (mt, _) in bag.topics.items()} }); nothing to segment")
    if len(images) != 1:
        raise BagError(f"{bag.path} has image topics {sorted(images)}; choose one with "
                       "--image-topic")
    return next(iter(images.items()))


class _Selector:
    """Decides on which frames the model runs (every N frames, or every T seconds of bag time)."""

    def __init__(self, cfg: RunConfig):
        self.cfg, self.last_ns = cfg, None

    def __call__(self, index: int, t_ns: int) -> bool:
        if self.cfg.every_seconds > 0:
            due = self.last_ns is None or t_ns - self.last_ns >= self.cfg.every_seconds * 1e9
        else:
            due = index % self.cfg.every_n_frames == 0
        if due:
            self.last_ns = t_ns
        return due


def _record(index: int, t_ns: int, stamp_ns: int, command: str | None, seg: Segmentation | None,
            reason: str = "", conv_ms: float = 0.0, model_ms: float = 0.0) -> dict:
    rec = {"frame": index, "t_ns": t_ns, "stamp_ns": stamp_ns, "command": command,
           "conv_ms": conv_ms, "model_ms": model_ms, "time": time.time()}
    if seg is None:
        return {**rec, "status": SKIPPED, "error": reason, "box": None, "score": 0.0}
    return {**rec, "status": seg.status.name, "error": seg.error,
            "box": [float(v) for v in seg.box] if seg.box is not None else None,
            "score": float(seg.score), "object_score": float(seg.object_score),
            "answer": seg.answer, "reasoning": seg.reasoning, "truncated": bool(seg.truncated),
            "generate_ms": seg.timings.generate_ms, "mask_ms": seg.timings.mask_ms,
            "total_ms": seg.timings.total_ms, "mask_rle": encode_rle(np.asarray(seg.mask, bool))}


class BagRunner:
    """Runs one segmenter over one bag into one output directory (see the module docstring)."""

    def __init__(self, segmenter, cfg: RunConfig, progress: bool = True):
        self.segmenter, self.cfg, self.progress = segmenter, cfg, progress
        self.types = message_types()
        self.model_s = 0.0  #: seconds inside the segmenter (set_image + segment) this run
        self.computed = 0  #: frames computed by the model this run (not reused)

    def _check_resume(self, out: Path, bag_path: Path) -> list[dict]:
        run_file = out / "run.json"
        meta = {"input": str(bag_path.resolve()), **self.cfg.fingerprint()}
        if run_file.is_file():
            old = json.loads(run_file.read_text(encoding="utf-8"))
            if old != meta:
                raise BagError(f"{out} holds a run with other settings ({old}); use another "
                               "output directory or delete it to start over")
        out.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return read_records(out / "frames.jsonl")

    def _segment(self, rgb: np.ndarray, command: str) -> Segmentation:
        t0 = time.perf_counter()
        try:
            self.segmenter.set_image(rgb)
            return self.segmenter.segment(command, reasoning=self.cfg.reasoning)
        except LensError as err:
            return Segmentation.from_error(err, command, rgb.shape[:2])
        except Exception as err:  # a model failure costs this frame a MODEL_ERROR, not the run
            log.exception("model failed on frame with command %r", command)
            return Segmentation.from_error(err, command, rgb.shape[:2])
        finally:
            self.model_s += time.perf_counter() - t0

    def run(self, bag_path: str | Path, output_dir: str | Path) -> dict:
        """Process the whole bag; returns the summary (also written to OUT/summary.json)."""
        t_start = time.perf_counter()
        bag_path, out = Path(bag_path), Path(output_dir)
        done = {r["frame"]: r for r in self._check_resume(out, bag_path)}
        # written as OUT/partial/bag (so its files are named bag.*), moved to OUT/bag when done
        partial = out / "partial" / "bag"
        shutil.rmtree(partial.parent, ignore_errors=True)  # an interrupted bag cannot be appended
        partial.parent.mkdir()
        cfg = self.cfg
        with InputBag(bag_path) as bag:
            image_topic, _ = _pick_image_topic(bag, cfg.image_topic)
            if cfg.command_topic and bag.topics.get(cfg.command_topic, ("",))[0] != STRING:
                raise BagError(f"{cfg.command_topic} is not a std_msgs/String topic of "
                               f"{bag_path}; topics: {bag.topics}")
            n_frames = bag.topics[image_topic][1]
            if cfg.max_frames is not None:
                n_frames = min(n_frames, cfg.max_frames)
            spoken, spoken_at = self._listen(bag, image_topic, n_frames, out) \
                if cfg.audio_topic else ([], {})
            pending = deque(sorted(spoken, key=lambda s: s.stamp_ns))
            strip_at = set(np.linspace(0, n_frames - 1, min(cfg.strip_frames, n_frames))
                           .round().astype(int).tolist()) if n_frames else set()
            strip, video = {}, VideoSink(out / "overlays.mp4") if cfg.video else None
            records = []
            select, command, index = _Selector(cfg), cfg.command, 0
            bar = tqdm(total=n_frames, desc="frames", unit="frame", disable=not self.progress)
            with OutputBag(partial, cfg.storage or storage_of(bag_path)) as obag, \
                    open(out / "frames.jsonl", "a", encoding="utf-8") as jsonl:
                for c in bag.connections:
                    obag.add_topic(c.topic, c.msgtype, like=c)
                obag.add_topic(cfg.result_topic, LENS_RESULT)
                obag.add_topic(cfg.mask_topic, IMAGE)
                if cfg.debug_topic:
                    obag.add_topic(cfg.debug_topic, IMAGE)
                self._add_speech_topics(obag)
                for conn, t_ns, raw in bag.messages():
                    if conn.topic == image_topic and index >= n_frames:
                        break
                    self._write_spoken(obag, pending, t_ns)
                    obag.write_raw(conn.topic, t_ns, raw)
                    if conn.topic == cfg.command_topic:
                        try:
                            command = bag.deserialize(raw, conn).data
                        except Exception as err:  # a damaged command message
                            log.warning("unreadable command at %d ns skipped (%s)", t_ns, err)
                        continue
                    if conn.topic != image_topic:
                        continue
                    if index in spoken_at:
                        command = spoken_at[index].command
                    rec, seg, header, rgb = self._frame(bag, conn, t_ns, raw, index, command,
                                                        select, done.get(index))
                    if index not in done:
                        jsonl.write(json.dumps(rec) + "\n")
                        jsonl.flush()
                    records.append(rec)
                    drawn = self._write_outputs(obag, t_ns, header, rgb, seg, rec)
                    if drawn is not None and index in strip_at:
                        strip[index] = drawn
                    if video is not None and drawn is not None:
                        video.add(drawn)
                    index += 1
                    bar.update(1)
                self._write_spoken(obag, pending, None)
            bar.close()
        final = out / "bag"
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        partial.parent.rmdir()
        return self._finish(out, bag_path, records, strip, video, time.perf_counter() - t_start,
                            reused=sum(1 for r in records if r["frame"] in done),
                            extra=self._speech_summary(out, spoken) if cfg.audio_topic else {})

    def _listen(self, bag, image_topic, n_frames, out):
        """Recognise the audio topic (one pass with the frame times); returns the transcript
        records and frame index -> command taking effect there; writes OUT/transcripts.jsonl."""
        cfg = self.cfg
        for flag, topic in (("--transcript-topic", cfg.transcript_topic),
                            ("--spoken-command-topic", cfg.spoken_command_topic)):
            if topic and topic in bag.topics:
                raise BagError(f"{topic} is already a topic of {bag.path}; choose another output "
                               f"topic with {flag} (or '' for none)")
        reader = AudioCommandReader(bag, cfg.audio_topic, load_recognizer(cfg.speech_config))
        frame_times = []
        for conn, t_ns, raw in bag.messages([cfg.audio_topic, image_topic]):
            if conn.topic != image_topic:
                reader.add(conn, t_ns, raw)
            elif len(frame_times) < n_frames:
                frame_times.append(t_ns)
        spoken = reader.finish()
        spoken_at = assign_to_frames(spoken, frame_times)
        with open(out / "transcripts.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(s.record) + "\n" for s in spoken)
        for s in spoken:
            log.info("utterance at %.2f s: %r %s", s.stamp_ns * 1e-9, s.record["text"],
                     f"-> frame {s.record['frame']}" if s.command else s.record["reason"])
        return spoken, spoken_at

    def _add_speech_topics(self, obag) -> None:
        """Declare the transcript and spoken-command output topics (with an audio topic)."""
        if self.cfg.audio_topic and self.cfg.transcript_topic:
            obag.add_topic(self.cfg.transcript_topic, TRANSCRIPT)
        if self.cfg.audio_topic and self.cfg.spoken_command_topic:
            obag.add_topic(self.cfg.spoken_command_topic, STRING)

    def _write_spoken(self, obag, pending: deque, until_ns: int | None) -> None:
        """Write the transcripts (and accepted commands) due by ``until_ns`` (None = all)."""
        cfg, types = self.cfg, obag.typestore.types
        while pending and (until_ns is None or pending[0].stamp_ns <= until_ns):
            s = pending.popleft()
            if cfg.transcript_topic:
                obag.write(cfg.transcript_topic, s.stamp_ns,
                           transcript_message(s.record, self.types, types[TRANSCRIPT]))
            if cfg.spoken_command_topic and s.command is not None:
                obag.write(cfg.spoken_command_topic, s.stamp_ns, types[STRING](data=s.command))

    @staticmethod
    def _speech_summary(out, spoken) -> dict:
        """summary.json fields of an audio-topic run."""
        return {"utterances": sum(1 for s in spoken if "chunks" not in s.record),
                "bad_audio_chunks": sum(s.record.get("chunks", 0) for s in spoken),
                "spoken_commands": sum(1 for s in spoken if s.command is not None),
                "applied_commands": sum(1 for s in spoken if s.record["frame"] is not None),
                "transcripts": str(out / "transcripts.jsonl")}

    def _frame(self, bag, conn, t_ns, raw, index, command, select, old):
        """(record, segmentation or None, header, rgb or None) of one image message.

        The header is the message's own whenever it can be read (also for bad pixels), else one
        stamped with the bag time. ``command`` None: none yet (SKIPPED); an invalid one (empty,
        control characters, ...) is answered BAD_COMMAND as lens_node does.
        """
        t0 = time.perf_counter()
        header, rgb, err = None, None, None
        try:
            header, rgb = decode_frame(bag, conn, raw)
        except BadImageError as e:
            err, header = e, getattr(e, "header", None)
        if header is None or isinstance(header, tuple):
            stamp_ns, frame_id = header if header is not None else (t_ns, "")
            header = make_header(self.types, stamp_ns, frame_id)
        conv_ms = (time.perf_counter() - t0) * 1e3
        stamp = stamp_to_ns(header)
        selected = command is not None and select(index, t_ns)  # before reuse: selector state
        if old is not None:  # resumed: the record decides, the model is not called
            return old, record_to_segmentation(old), header, rgb
        if not selected:
            reason = "not selected" if command is not None else "no command yet"
            return _record(index, t_ns, stamp, command, None, reason, conv_ms), None, header, rgb
        try:
            command = self.segmenter.check_command(command)
        except BadCommandError as e:
            seg = Segmentation.from_error(e, command if isinstance(command, str) else "",
                                          rgb.shape[:2] if rgb is not None else (0, 0))
            return _record(index, t_ns, stamp, command, seg, conv_ms=conv_ms), seg, header, rgb
        if err is not None:
            seg = Segmentation.from_error(err, command)
            return _record(index, t_ns, stamp, command, seg, conv_ms=conv_ms), seg, header, rgb
        t1 = time.perf_counter()
        seg = self._segment(rgb, command)
        self.computed += 1
        return _record(index, t_ns, stamp, command, seg, conv_ms=conv_ms,
                       model_ms=(time.perf_counter() - t1) * 1e3), seg, header, rgb

    def _write_outputs(self, obag, t_ns, header, rgb, seg, rec):
        """Write result/mask/debug_image of one frame; returns the overlay (None without image)."""
        if seg is not None:
            obag.write(self.cfg.result_topic, t_ns,
                       segmentation_to_result(seg, header, self.types))
            if seg.ok:
                obag.write(self.cfg.mask_topic, t_ns, mask_to_image(seg.mask, header, self.types))
        if rgb is None:
            return None
        if seg is None:
            drawn = overlay(rgb, command=rec["command"] or "", status=f"{SKIPPED}: {rec['error']}")
        else:
            drawn = overlay(rgb, seg.mask, seg.box, seg.command, seg.answer,
                            "" if seg.status == Status.OK else seg.status.name)
        if self.cfg.debug_topic:
            obag.write(self.cfg.debug_topic, t_ns, rgb_to_image(drawn, header, self.types))
        return drawn

    def _finish(self, out, bag_path, records, strip, video, wall_s, reused, extra) -> dict:
        write_csv(records, out / "frames.csv")
        if strip:
            write_strip([strip[k] for k in sorted(strip)], out / "overlays.png")
        video_ok = video.close() if video is not None else False
        ran = [r for r in records if r["status"] != SKIPPED]
        lat = np.array([r["model_ms"] for r in records if r["model_ms"] > 0], dtype=float)
        statuses: dict[str, int] = {}
        for r in records:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        summary = {
            "input": str(bag_path), "output_bag": str(out / "bag"), "frames": len(records),
            "results": len(ran), "skipped": len(records) - len(ran), "statuses": statuses,
            "computed": self.computed, "reused": reused, "wall_s": wall_s, "model_s": self.model_s,
            "outside_model_share": (wall_s - self.model_s) / wall_s if wall_s > 0 else 0.0,
            "fps": self.computed / wall_s if self.computed and wall_s > 0 else None,
            "model_ms": {"mean": float(lat.mean()), "p50": float(np.median(lat)),
                         "max": float(lat.max())} if lat.size else None,
            "report_csv": str(out / "frames.csv"), "report_jsonl": str(out / "frames.jsonl"),
            "overlays": str(out / "overlays.png") if strip else None,
            "video": str(out / "overlays.mp4") if video_ok else None, **extra,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return summary
