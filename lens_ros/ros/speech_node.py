"""``speech_node``: spoken commands to the ``command`` topic, with an embedded offline recogniser.

An adapter around :class:`lens_ros.speech.recognizer.SpeechRecognizer`: AudioChunk messages
(and/or a ``sounddevice`` microphone) -> mono int16 -> utterances -> recogniser -> decision.

Topics (relative, remappable): in ``audio`` (lens_ros/AudioChunk, reliable); out ``command``
(std_msgs/String, only accepted utterances), ``speech/transcript`` (lens_ros/Transcript, every
utterance and every bad chunk, accepted or not), ``speech/echo`` (std_msgs/String, what the node
understood, "segmenting: the red cube", with ``confirm_echo``), ``/diagnostics``; in
``speech/confirm`` (std_msgs/Bool: answers a command held by ``confirm_below``).

Confirm-before-forward (``confirm_below`` > 0): an accepted command with a confidence below it
is held (transcript reason ``confirm: ...``, echo "did you say: ...?"); "yes"/"confirm" (spoken)
or True on ``speech/confirm`` forwards it, "no"/"cancel", False or ``confirm_timeout_s``
without an answer drops it. Answer words are never forwarded as commands.

Lifecycle (auto-configures and activates with ``autostart``): configure = read parameters,
build the grammar and load the backend (a failure leaves the node unconfigured and
configurable); activate = publishers, the recognition worker, the ``audio`` subscription and the
microphone; deactivate = stop them (pending utterances are dropped and reported); cleanup = free
the backend. Callbacks only segment audio (cheap); one worker thread runs the recogniser, fed by
a bounded queue whose overflow is reported as ``dropped``.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from collections import Counter

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from std_msgs.msg import Bool, Header, String

from lens_ros.msg import AudioChunk, Transcript
from lens_ros.conversions.audio import chunk_to_pcm, stamp_seconds
from lens_ros.ros.node_main import run_lifecycle_node
from lens_ros.ros.qos import AUDIO_QOS, COMMAND_QOS, RESULT_QOS
from lens_ros.speech.confirm import ConfirmGate, GateDecision
from lens_ros.ros.speech_parameters import (PARAMETERS, RUNTIME,  # noqa: F401 (re-export)
                                            declare_speech_parameters,
                                            read_speech_config)
from lens_ros.speech.recognizer import SpeechRecognizer, SpeechResult
from lens_ros.speech.synthesis import speak
from lens_ros.speech.types import SpeechError

BAD_AUDIO_REPORT_S = 2.0  #: a repeated bad-chunk error is re-published at most this often


class SpeechNode(LifecycleNode):
    """Lifecycle node turning speech into commands (see the module docstring)."""

    def __init__(self, node_name: str = "speech_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_speech_parameters(self)
        self._recognizer: SpeechRecognizer | None = None
        self._config_error = ""
        self._mic_error = ""
        self._pubs: dict = {}
        self._sub = None
        self._mic = None
        self._queue: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # segmenter: audio callback vs. microphone thread
        self._frame_id = ""
        self._bad_audio = ("", 0.0)  # last reported error and when
        self._gate = ConfirmGate()
        self._gate_lock = threading.Lock()  # gate: worker vs. confirm topic vs. expiry timer
        self._confirm_sub = None
        self._expiry_timer = None
        self.counts: Counter = Counter()
        self.last: SpeechResult | None = None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self.get_parameter("diagnostics_period").value, self._diagnose)

    # -- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Read parameters, build the grammar, load the backend; FAILURE keeps it configurable."""
        t0 = time.perf_counter()
        try:
            config = read_speech_config(self)
            self._recognizer = SpeechRecognizer(config)
        except (SpeechError, ValueError, TypeError) as err:
            self._config_error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"configure failed: {self._config_error}")
            self._diagnose()
            return TransitionCallbackReturn.FAILURE
        self._config_error = ""
        vocab = self._recognizer.vocabulary
        self._gate = ConfirmGate(float(self.get_parameter("confirm_below").value),
                                 float(self.get_parameter("confirm_timeout_s").value),
                                 vocab.confirm_words, vocab.cancel_words)
        self.get_logger().info(f"backend {config.backend} ready in "
                               f"{time.perf_counter() - t0:.2f} s")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        """Publishers, worker, audio subscription, microphone (in that order)."""
        self._pubs = {"command": self.create_publisher(String, "command", COMMAND_QOS),
                      "transcript": self.create_publisher(Transcript, "speech/transcript",
                                                          RESULT_QOS),
                      "echo": self.create_publisher(String, "speech/echo", RESULT_QOS)}
        self._confirm_sub = self.create_subscription(Bool, "speech/confirm", self._on_confirm,
                                                     COMMAND_QOS)
        self._expiry_timer = self.create_timer(0.5, self._expire)
        self._queue = queue.Queue(maxsize=int(self.get_parameter("queue_size").value))
        self._worker = threading.Thread(target=self._work, args=(self._queue,), daemon=True)
        self._worker.start()
        self._sub = self.create_subscription(AudioChunk, "audio", self._on_audio, AUDIO_QOS)
        device = str(self.get_parameter("microphone_device").value)
        if device:
            try:
                self._mic = self._open_microphone(device)
            except (ImportError, OSError, ValueError, RuntimeError) as err:
                self._mic_error = (f"microphone {device!r} not opened: {type(err).__name__}: "
                                   f"{err} (pip install sounddevice; apt-get install "
                                   "libportaudio2); listening to the audio topic only")
                self.get_logger().error(self._mic_error)
        self.get_logger().info("listening on 'audio'" + (f" and microphone {device!r}"
                                                         if self._mic else ""))
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._release_interfaces()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release_backend()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Release everything, whatever the state."""
        self._release_interfaces()
        self._release_backend()

    def _on_set_parameters(self, changes) -> SetParametersResult:
        """RUNTIME parameters go to the live recogniser, the confirm_* and echo ones apply at
        once too; the rest wait for configure."""
        rec = self._recognizer
        for change in changes:
            if change.name in ("confirm_below", "confirm_timeout_s"):
                with self._gate_lock:
                    attr = "timeout_s" if change.name == "confirm_timeout_s" else change.name
                    setattr(self._gate, attr, float(change.value))
            elif change.name in ("confirm_echo", "echo_voice"):
                continue  # read at each echo
            elif rec is not None and change.name in RUNTIME:
                value = change.value
                setattr(rec.config, change.name,
                        float(value) if change.name == "confidence_threshold" else bool(value))
            elif rec is not None:
                self.get_logger().info(f"{change.name} takes effect at the next configure")
        return SetParametersResult(successful=True)

    # -- input ----------------------------------------------------------------------------------
    def _on_audio(self, msg: AudioChunk) -> None:
        """Decode and segment one chunk; finished utterances go to the worker."""
        self.counts["chunks"] += 1
        try:
            pcm, rate, clipped = chunk_to_pcm(msg)
        except SpeechError as err:
            self._report_bad_audio(str(err), msg.header)
            return
        self._frame_id = msg.header.frame_id
        stamp = stamp_seconds(msg.header.stamp) or self.get_clock().now().nanoseconds * 1e-9
        self.counts["clipped_float_samples"] += clipped
        self._segment(pcm, rate, stamp)

    def _segment(self, pcm, rate: int, stamp: float) -> None:
        rec, q = self._recognizer, self._queue
        if rec is None or q is None:
            return
        with self._lock:
            try:
                utts = rec.segment(pcm, rate, stamp)
            except SpeechError as err:
                self._report_bad_audio(str(err), Header(frame_id=self._frame_id))
                return
            self.counts["seconds"] += len(pcm) / rate
            starts = [rec.start_time(u) for u in utts]
        for utt, start in zip(utts, starts):
            try:
                q.put_nowait((utt, start))
            except queue.Full:
                res = SpeechResult(reason=f"dropped: {q.qsize()} utterances already wait for "
                                   "the recogniser (raise queue_size or use a faster backend)",
                                   backend=rec.backend.name, duration_s=utt.duration_s,
                                   start_time=start)
                self._publish(res)

    def _open_microphone(self, device: str):
        """Start a sounddevice input stream feeding the segmenter (its own thread)."""
        import sounddevice  # optional: pip install sounddevice (needs libportaudio2)

        rate = int(self.get_parameter("microphone_rate").value)
        block = int(rate * float(self.get_parameter("microphone_block_s").value))

        def callback(indata, frames, _time, status):
            if status:
                self.counts["microphone_overflows"] += 1
            self._segment(indata[:, 0].copy(), rate, self.get_clock().now().nanoseconds * 1e-9)

        stream = sounddevice.InputStream(device=int(device) if device.isdigit() else device,
                                         channels=1, samplerate=rate, dtype="int16",
                                         blocksize=block, callback=callback)
        stream.start()
        return stream

    # -- worker ---------------------------------------------------------------------------------
    def _work(self, q: queue.Queue) -> None:
        """Recognise queued utterances until a None arrives."""
        while True:
            item = q.get()
            if item is None:
                return
            utt, start = item
            rec = self._recognizer
            if rec is None:
                continue
            res = rec.decide(utt)
            res.start_time = start
            with self._gate_lock:
                decision = self._gate.feed(res, time.monotonic())
            self._deliver(decision)

    # -- confirmation ---------------------------------------------------------------------------
    def _deliver(self, d: GateDecision) -> None:
        """Publish a gate decision: the transcript, the command if any, the echo."""
        self._publish(d.result, forward=d.forward)
        if d.forward:
            self._echo(f"segmenting: {d.forward}")
        elif d.prompt:
            self._echo(d.prompt)
        elif d.result.code == "cancelled":
            self._echo("cancelled")

    def _on_confirm(self, msg: Bool) -> None:
        """``speech/confirm``: True forwards the held command, False drops it."""
        with self._gate_lock:
            decision = self._gate.answer(bool(msg.data))
        self._deliver(decision)

    def _expire(self) -> None:
        with self._gate_lock:
            held = self._gate.expire(time.monotonic())
        if held is not None:
            self._deliver(GateDecision("", held))

    def _echo(self, text: str) -> None:
        """Say back ``text`` as confirm_echo asks: topic + log line, and aloud for "speak"."""
        mode = str(self.get_parameter("confirm_echo").value)
        pubs = self._pubs
        if mode == "off" or not pubs:
            return
        pubs["echo"].publish(String(data=text))
        self.get_logger().info(f"echo: {text}")
        if mode == "speak":
            voice = str(self.get_parameter("echo_voice").value)
            threading.Thread(target=self._speak, args=(text, voice), daemon=True).start()

    def _speak(self, text: str, voice: str) -> None:
        error = speak(text, voice)
        if error:
            self.get_logger().warning(f"confirm_echo speak: {error}; echo on speech/echo only",
                                      throttle_duration_sec=60.0)

    # -- output ---------------------------------------------------------------------------------
    def _publish(self, res: SpeechResult, header: Header | None = None,
                 forward: str | None = None) -> None:
        """Publish the transcript of ``res`` and ``forward`` (default: ``res.text`` when
        accepted) on ``command``."""
        forward = (res.text if res.accepted else "") if forward is None else forward
        pubs = self._pubs
        self.last = res
        self.counts["utterances" if res.code != "bad_audio" else "bad_audio"] += 1
        self.counts[f"reason_{res.code or 'accepted'}"] += 1
        if header is None:
            header = Header(frame_id=self._frame_id)
            t = res.start_time if res.start_time is not None else \
                self.get_clock().now().nanoseconds * 1e-9
            header.stamp = Time(sec=int(t), nanosec=int((t - int(t)) * 1e9) % 10**9)
        msg = Transcript(header=header, text=res.text, confidence=float(res.confidence),
                         alternatives=list(res.alternatives), accepted=bool(res.accepted),
                         reason=res.reason, backend=res.backend,
                         duration_s=float(res.duration_s), decode_ms=float(res.decode_ms))
        if not pubs:
            return
        if forward:
            pubs["command"].publish(String(data=forward))
            self.counts["accepted"] += 1
            self.get_logger().info(f"command: {forward!r} ({res.confidence:.2f})")
        else:
            self.get_logger().info(f"not forwarded: {res.text!r} ({res.reason})",
                                   throttle_duration_sec=1.0)
        pubs["transcript"].publish(msg)

    def _report_bad_audio(self, error: str, header: Header) -> None:
        """A transcript with reason bad_audio, at most every BAD_AUDIO_REPORT_S per error."""
        self.counts["bad_chunks"] += 1
        last, when = self._bad_audio
        now = time.monotonic()
        if error == last and now - when < BAD_AUDIO_REPORT_S:
            return
        self._bad_audio = (error, now)
        self.get_logger().warning(f"bad audio chunk: {error}")
        rec = self._recognizer
        self._publish(SpeechResult(reason=f"bad_audio: {error}",
                                   backend=rec.backend.name if rec else ""), header)

    def _diagnose(self) -> None:
        rec, q = self._recognizer, self._queue
        values = {"state": self._state_label(), **{k: v for k, v in self.counts.items()}}
        if rec is not None:
            seg = rec.segmenter
            values.update(backend=rec.backend.name, in_speech=seg.in_speech,
                          level_db=f"{seg.level_db:.1f}",
                          floor_db=f"{seg.floor_db:.1f}" if seg.floor_db is not None else "",
                          queue_length=q.qsize() if q else 0)
        pubs = self._pubs
        if pubs:  # how many matched subscribers a command reaches (0: nobody is listening)
            values.update(command_subscribers=pubs["command"].get_subscription_count())
        if self.last is not None:
            values.update(last_text=self.last.text, last_reason=self.last.reason,
                          last_decode_ms=f"{self.last.decode_ms:.1f}")
        if self._config_error:
            level, message = DiagnosticStatus.ERROR, self._config_error
        elif values["state"] != "active":
            level, message = DiagnosticStatus.WARN, f"node is {values['state']}"
        elif self._mic_error:
            level, message = DiagnosticStatus.WARN, self._mic_error
        elif self.last is not None and self.last.code in ("bad_audio", "dropped", "clipped",
                                                          "recognizer_error"):
            level, message = DiagnosticStatus.WARN, self.last.reason
        else:
            level, message = DiagnosticStatus.OK, "listening"
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: speech", message=message[:500],
            hardware_id=self._frame_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        try:
            self._diag_pub.publish(DiagnosticArray(header=Header(
                stamp=self.get_clock().now().to_msg()), status=[status]))
        except Exception:  # context already shut down at exit
            pass

    # -- helpers --------------------------------------------------------------------------------
    def _release_interfaces(self) -> None:
        mic, self._mic, self._mic_error = self._mic, None, ""
        if mic is not None:
            mic.stop()
            mic.close()
        for sub in (self._sub, self._confirm_sub):
            if sub is not None:
                self.destroy_subscription(sub)
        self._sub = self._confirm_sub = None
        timer, self._expiry_timer = self._expiry_timer, None
        if timer is not None:
            self.destroy_timer(timer)
        q, worker = self._queue, self._worker
        self._queue = self._worker = None
        if q is not None:
            while not q.empty():
                _utt, start = q.get_nowait()
                self._publish(SpeechResult(reason="dropped: node deactivated",
                                           start_time=start))
            q.put(None)
        if worker is not None:
            worker.join(timeout=10.0)
        pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            self.destroy_publisher(pub)

    def _release_backend(self) -> None:
        rec, self._recognizer = self._recognizer, None
        if rec is not None:
            rec.backend.close()

    def _state_label(self) -> str:
        try:
            return self._state_machine.current_state[1]
        except AttributeError:
            return "unknown"


def main(args: list[str] | None = None) -> int:
    """Console script ``speech_node``."""
    return run_lifecycle_node(SpeechNode, "speech_node", "config/speech.yaml", 3, args)


if __name__ == "__main__":
    sys.exit(main())
