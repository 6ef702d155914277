"""LensSegmenter: the one inference API (node, bag runner, evaluator and demo all use it).

    seg = LensSegmenter.from_pretrained(path)           # cuda+bf16 when available, else cpu+fp32
    seg.set_image(rgb)                                   # HxWx3 uint8 RGB; encodes once
    r = seg.segment("the red mug", stream=print)         # -> Segmentation
    rs = seg.segment_batch(["the mug", "the laptop"])    # one generate batch on the same image

Per command: greedy generation (M-RoPE, KV cache), then the LENS mask pass over prompt + completion
+ 64 queries (1-D positions) and the SAM 2 decoder on the cached image features; the answer box is
parsed from the text and rescaled to the input image (it is independent of the mask).
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lens_ros.core import (BadCommandError, CanceledError, LensError, ModelError, NotReadyError,
                           Segmentation, Status, Timings, check_command_characters)
from lens_ros.model.answers import parse_answer, rescale_box
from lens_ros.model.build import load_checkpoint
from lens_ros.model.config import InferenceConfig
from lens_ros.model.coords import answer_boxes
from lens_ros.model.fast_path import fast_query_hidden
from lens_ros.model.generation import (CancelCriteria, TextCallbackStreamer, completion_state, eos_token_ids,
                         greedy_config)
from lens_ros.model.modeling import LensModel, SamImageFeatures
from lens_ros.model.processing import (LlmImage, encode_prompts, prepare_llm_image, prepare_sam_image,
                         to_rgb_array)
from lens_ros.model.prompts import render_prompt

log = logging.getLogger(__name__)


@dataclass
class _ImageState:
    """Everything cached for the current image."""

    hw: tuple[int, int]
    llm: LlmImage
    vision: object  # transformers' vision-tower output (BaseModelOutputWithPooling)
    sam: SamImageFeatures
    encode_ms: float
    encode_reported: bool = False


@dataclass
class _Generated:
    """Output of the generation step for a batch of B prompts."""

    ids: torch.Tensor  # (B, L) prompt (left-padded) + completion (right-padded)
    attention_mask: torch.Tensor  # (B, L) 0 on pad ids, as the reference's second pass
    prompt_len: int
    truncated: list[bool]
    ms: float
    cache: object = None  # the generation KV cache, kept only for the fast mask pass
    rope_deltas: torch.Tensor | None = None  # M-RoPE offsets of the batch (fast mask pass)


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (as the reference), fp32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class LensSegmenter:
    """Text-prompted segmentation with LENS. Thread-safe: calls are serialised by a lock, and
    ``cancel`` callbacks may be flipped from any thread."""

    def __init__(self, model: LensModel, processor, config: InferenceConfig | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._config = (config or InferenceConfig()).replace()
        self._image: _ImageState | None = None
        self._lock = threading.RLock()
        self._apply_decoder_settings()

    @classmethod
    def from_pretrained(cls, path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, **overrides) -> "LensSegmenter":
        """Load a checkpoint directory; ``overrides`` replace fields of its InferenceConfig.

        Raises CheckpointError (bad directory/files/keys) or ValueError (unknown override).
        """
        dev = torch.device(device) if device is not None else default_device()
        dt = dtype if dtype is not None else default_dtype(dev)
        t0 = time.perf_counter()
        ckpt = load_checkpoint(path, dev, dt)
        config = ckpt.inference.replace(**overrides)
        log.info("loaded LENS from %s on %s/%s in %.1f s", path, dev, dt,
                 time.perf_counter() - t0)
        return cls(ckpt.model, ckpt.processor, config)

    # ---- state -------------------------------------------------------------------------------
    @property
    def config(self) -> InferenceConfig:
        """The inference settings (a dataclass; use :meth:`configure` to change them)."""
        return self._config

    def configure(self, **overrides) -> InferenceConfig:
        """Replace inference settings (validated); returns the new config."""
        with self._lock:
            self._config = self._config.replace(**overrides)
            self._apply_decoder_settings()
            return self._config

    @property
    def device(self) -> torch.device:
        return self._model().device

    @property
    def has_image(self) -> bool:
        """True when an image is set."""
        return self._image is not None

    def _model(self) -> LensModel:
        if self.model is None:
            raise NotReadyError("the model was released; load a new LensSegmenter")
        return self.model

    def _apply_decoder_settings(self) -> None:
        dec = self._model().sam.sam_mask_decoder
        dec.dynamic_multimask_stability_delta = self._config.stability_delta
        dec.dynamic_multimask_stability_thresh = self._config.stability_thresh

    def release(self) -> None:
        """Free the model and the cached image (GPU memory too); later calls: NotReadyError."""
        with self._lock:
            on_cuda = self.model is not None and self.model.device.type == "cuda"
            self.model = None
            self._image = None
            gc.collect()
            if on_cuda:
                torch.cuda.empty_cache()

    # ---- image -------------------------------------------------------------------------------
    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Encode one frame so that several commands can reuse it.

        Arguments:
          image (np.ndarray): HxWx3 uint8 RGB, values in [0, 255] (HxW/HxWx1 gray and HxWx4
            RGBA are converted). Raises BadImageError otherwise.
        """
        rgb = to_rgb_array(image)
        with self._lock:
            model = self._model()
            t0 = time.perf_counter()
            self._image = None
            cfg = model.lens_config
            llm = prepare_llm_image(rgb, self.processor, cfg.processing.patch_factor,
                                    cfg.processing.min_pixels,
                                    self._config.max_pixels or cfg.processing.max_pixels)
            llm.pixel_values = llm.pixel_values.to(model.device, model.dtype)
            llm.image_grid_thw = llm.image_grid_thw.to(model.device)
            vision = model.model.get_image_features(llm.pixel_values, llm.image_grid_thw,
                                                    return_dict=True)
            sam_pixels = prepare_sam_image(rgb, cfg.sam.image_size, cfg.processing.sam_pixel_mean,
                                           cfg.processing.sam_pixel_std).to(model.device)
            sam = model.encode_sam_image(sam_pixels)
            self._image = _ImageState(hw=rgb.shape[:2], llm=llm, vision=vision, sam=sam,
                                      encode_ms=(time.perf_counter() - t0) * 1e3)

    def reset_image(self) -> None:
        """Forget the current image."""
        with self._lock:
            self._image = None

    # ---- commands ----------------------------------------------------------------------------
    def check_command(self, command) -> str:
        """The trimmed command, or BadCommandError (not text, empty, too long, special tokens,
        control characters or undecodable bytes: see ``core.check_command_characters``)."""
        if isinstance(command, bytes):
            try:
                command = command.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BadCommandError(f"command is not valid UTF-8: {err}") from None
        if not isinstance(command, str):
            raise BadCommandError(f"command must be a string, got {type(command).__name__}")
        text = command.strip()
        if not text:
            raise BadCommandError("command is empty or whitespace-only; say what to segment")
        if len(text) > self._config.max_command_chars:
            raise BadCommandError(f"command has {len(text)} characters, more than "
                                  f"max_command_chars={self._config.max_command_chars}; shorten "
                                  "it or raise the limit")
        if "<|" in text:
            raise BadCommandError("command contains '<|', which would inject special tokens")
        return check_command_characters(text)

    def segment(self, command: str, reasoning: bool | None = None,
                stream: Callable[[str], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> Segmentation:
        """Segment what ``command`` refers to in the current image.

        Arguments:
          command (str): referring expression, inserted unchanged into the LENS prompt.
          reasoning (bool | None): use the ``<think>`` prompt; None = ``config.reasoning``.
          stream (callable | None): called with the completion text so far after every token.
          cancel (callable | None): polled before generation and after every token; True stops
            and raises CanceledError (its ``partial`` attribute holds the completion so far).
        Returns:
          Segmentation with mask (HxW bool of the input image), box (xyxy input pixels or None),
          score, object_score, reasoning, answer, status OK or NO_TARGET, truncated, timings.
        """
        text = self.check_command(command)
        return self._run([text], reasoning, stream, cancel)[0]

    def segment_batch(self, commands: list[str],
                      reasoning: bool | None = None) -> list[Segmentation]:
        """Several commands on the current image in one generate batch (left padding).

        Invalid commands get a BAD_COMMAND result in their slot; the others run together.
        """
        results: list[Segmentation | None] = [None] * len(commands)
        valid: list[tuple[int, str]] = []
        for i, command in enumerate(commands):
            try:
                valid.append((i, self.check_command(command)))
            except BadCommandError as err:
                hw = self._image.hw if self._image is not None else (0, 0)
                results[i] = Segmentation.from_error(err, str(command), hw)
        if valid:
            for (i, _), res in zip(valid, self._run([t for _, t in valid], reasoning)):
                results[i] = res
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _run(self, texts: list[str], reasoning: bool | None,
             stream: Callable[[str], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> list[Segmentation]:
        with self._lock:
            model = self._model()
            image = self._image
            if image is None:
                raise NotReadyError("no image set; call set_image(rgb) before segment()")
            cfg = self._config
            use_reasoning = cfg.reasoning if reasoning is None else bool(reasoning)
            t_start = time.perf_counter()
            try:
                gen = self._generate(model, image, texts, use_reasoning, stream, cancel)
                t_mask = time.perf_counter()
                masks = self._mask_pass(model, image, gen, self._sam_boxes(model, image, gen))
                mask_ms = (time.perf_counter() - t_mask) * 1e3
            except LensError:
                raise
            except (RuntimeError, ValueError, IndexError) as err:
                raise ModelError(f"LENS inference failed: {type(err).__name__}: {err}") from err
            encode_ms = 0.0 if image.encode_reported else image.encode_ms
            image.encode_reported = True
            total_ms = (time.perf_counter() - t_start) * 1e3 + encode_ms
            timings = Timings(encode_ms=encode_ms, generate_ms=gen.ms, mask_ms=mask_ms,
                              total_ms=total_ms)
            # every result of a batch carries the batch's stage times (its own copy)
            return [self._result(text, gen.ids[i, gen.prompt_len:], gen.truncated[i], masks, i,
                                 image, dataclasses.replace(timings))
                    for i, text in enumerate(texts)]

    def _generate(self, model, image: _ImageState, texts, use_reasoning, stream,
                  cancel) -> _Generated:
        """Greedy generation of all prompts in one batch (left padding)."""
        prompts = [render_prompt(t, use_reasoning) for t in texts]
        enc = encode_prompts(self.tokenizer, prompts, image.llm.num_tokens,
                             model.config.image_token_id)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        b = len(texts)
        grid = image.llm.image_grid_thw.expand(b, -1)
        vision = _repeat_vision(image.vision, b)
        gen_cfg = greedy_config(model.generation_config, self._config.max_new_tokens,
                                self._config.repetition_penalty)
        if cancel is not None and cancel():
            raise CanceledError("canceled before generation started")
        streamer = TextCallbackStreamer(self.tokenizer, stream) if stream else None
        stopper = CancelCriteria(cancel) if cancel else None
        t0 = time.perf_counter()
        fast = gen_cfg.return_dict_in_generate = self._config.fast_mask_pass
        out = model.generate(**enc, image_grid_thw=grid, mm_encoder_outputs={"image": vision},
                             generation_config=gen_cfg, streamer=streamer,
                             stopping_criteria=[stopper] if stopper else None)
        cache, deltas = (out.cache, model.model.rope_deltas) if fast else (None, None)
        out = out.sequences if fast else out
        gen_ms = (time.perf_counter() - t0) * 1e3
        if stopper is not None and stopper.fired:
            partial = self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:],
                                            skip_special_tokens=True)
            err = CanceledError(f"canceled after {out.shape[1] - enc['input_ids'].shape[1]} "
                                f"generated tokens; partial text: {partial[-200:]!r}")
            err.partial = partial  # the completion so far, for CANCELED results
            raise err
        prompt_len = enc["input_ids"].shape[1]
        eos = eos_token_ids(gen_cfg)
        truncated = [completion_state(out[i, prompt_len:], eos, self._config.max_new_tokens)[1]
                     for i in range(b)]
        pad = self.tokenizer.pad_token_id
        attn = (out != pad).long() if pad is not None else torch.ones_like(out)
        return _Generated(ids=out, attention_mask=attn, prompt_len=prompt_len,
                          truncated=truncated, ms=gen_ms, cache=cache, rope_deltas=deltas)

    def _sam_boxes(self, model: LensModel, image: _ImageState, gen: _Generated):
        """(B, 4) answer boxes in SAM input pixels for ``box_prompt`` models (else None)."""
        if not model.lens_config.box_prompt:
            return None
        rows = gen.ids[:, gen.prompt_len:]
        return answer_boxes(self.tokenizer, rows, [image.llm.resized_hw] * len(rows),
                            model.lens_config.sam.image_size).to(model.device)

    def _mask_pass(self, model: LensModel, image: _ImageState, gen: _Generated, boxes=None):
        """LENS' second pass: queries -> SAM prompt -> decoder on the cached image features
        (or the fast pass over the generation cache when ``fast_mask_pass`` is on)."""
        if gen.cache is not None:
            hidden = fast_query_hidden(model, gen.ids, gen.cache, self.tokenizer.pad_token_id,
                                       gen.rope_deltas)
        else:
            b = gen.ids.shape[0]
            grid = image.llm.image_grid_thw.expand(b, -1)
            vision = {"image": _repeat_vision(image.vision, b)}
            hidden = model.query_hidden_states(gen.ids, gen.attention_mask, image_grid_thw=grid,
                                               mm_encoder_outputs=vision)
        pred = model.decode_masks(model.sam_prompt(hidden), image.sam,
                                  multimask_fallback=self._config.stability_fallback,
                                  boxes=boxes)
        logits = model.upsample_masks(pred.low_res_logits, image.hw)
        return pred, logits

    def _result(self, text, new_ids, truncated, masks, i, image, timings) -> Segmentation:
        pred, logits = masks
        answer_text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        parsed = parse_answer(answer_text)
        box = (rescale_box(parsed.box, image.llm.resized_hw, image.hw)
               if parsed.box is not None else None)
        mask = (logits[i, 0] > self._config.mask_threshold).cpu().numpy()
        score = float(pred.iou[i, 0].float())
        obj = float(pred.object_score[i, 0].float())
        status, error = Status.OK, ""
        gate = self._gate(score, obj, box)
        if gate:
            status, error = Status.NO_TARGET, gate
            mask = np.zeros_like(mask)
        return Segmentation(command=text, mask=mask, box=box, score=score, object_score=obj,
                            reasoning=parsed.reasoning, answer=answer_text, status=status,
                            error=error, truncated=bool(truncated), timings=timings)

    def _gate(self, score: float, obj: float, box) -> str:
        """Reason the no-target gate fires, or "" (all gates off by default)."""
        cfg = self._config
        if cfg.no_target_object_score is not None and obj < cfg.no_target_object_score:
            return (f"no target: object score {obj:.2f} < no_target_object_score "
                    f"{cfg.no_target_object_score}")
        if cfg.no_target_iou is not None and score < cfg.no_target_iou:
            return f"no target: predicted IoU {score:.2f} < no_target_iou {cfg.no_target_iou}"
        if cfg.no_target_without_box and box is None:
            return "no target: the answer holds no box (no_target_without_box)"
        return ""


def _repeat_vision(vision, b: int):
    """The cached vision-tower output for ``b`` prompts on the same image."""
    if b == 1:
        return vision
    out = type(vision)(**{k: v for k, v in vision.items()})
    out.pooler_output = tuple(vision.pooler_output) * b
    return out
