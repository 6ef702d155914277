"""Stage 2: GRPO with LENS' mask reward and supervised mask loss, on TRL's ``GRPOTrainer``.

``LensGRPOTrainer`` changes only what LENS needs (everything else is TRL's):

* ``__init__``: sets the trainable parameters (SAM image encoder frozen), builds the reward
  functions named in the config, builds the frozen KL reference from the policy's own Qwen
  weights (TRL would reload it from ``model.config._name_or_path``), applies LoRA when asked,
  installs the LENS policy pass (:mod:`lens_ros.training.lens_pass`) and, with vLLM, makes the
  weight sync skip the LENS head and SAM.
* ``_generate``: after TRL generates the G rollouts, computes the SAM image features once per
  image and each rollout's predicted mask (no gradient, training-mode decoder) so that
  ``mask_iou_reward`` can score it; masks reach the rewards as the ``pred_mask`` column.
* ``_get_per_token_logps_and_entropies``: routes policy calls through the LENS pass.
* ``compute_loss``: GRPO loss (TRL) + ``mask_loss_weight`` x (BCE + Dice) of every rollout's
  mask against the ground truth, both from the same model call (with ``mask_loss_min_box_iou``
  > 0 only of the rollouts whose answer box hits the target); logs ``mask_loss``, ``mask_bce``,
  ``mask_dice`` and ``mask_loss_share``.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from accelerate.utils import is_peft_model
from transformers import Qwen2_5_VLForConditionalGeneration
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model, pad

from lens_ros.model.modeling import LensModel
from lens_ros.training.batching import sam_pixels
from lens_ros.training.common import (HEAD_PREFIXES, EpochCallback, LensCheckpointMixin,
                                      MetricsFileCallback, configure_trainable,
                                      sam_features_by_key, stack_features)
from lens_ros.training.grpo_config import LensGRPOConfig
from lens_ros.training.lens_pass import CallWithLens, LensPassRequest, install_lens_forward
from lens_ros.training.losses import mask_loss
from lens_ros.training.rewards import REWARD_FUNCS, answer_box_iou, mask_iou_reward
from lens_ros.training.zero3 import gathered, persist_out_of_forward_params

log = logging.getLogger(__name__)

#: language-model projections LoRA adapts (regex on module names; the vision tower is excluded)
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def reference_model(model: LensModel) -> Qwen2_5_VLForConditionalGeneration:
    """A frozen Qwen2.5-VL copy of the policy's language and vision weights (no LENS head, no
    SAM), for the KL term: the reference of stage 2 is the initial policy."""
    from transformers.initialization import no_init_weights

    from lens_ros.model.build import whole_parameters

    device, dtype = model.device, model.dtype
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), whole_parameters(), torch.device(device):
            ref = Qwen2_5_VLForConditionalGeneration(model.config)
    finally:
        torch.set_default_dtype(old)
    state = {k: v for k, v in model.state_dict().items() if k.startswith(("model.", "lm_head."))}
    ref.load_state_dict(state, strict=True)
    ref.generation_config = model.generation_config
    if model.lens_config.coord_channels:  # demo deviation: same vision input as the policy
        from lens_ros.model.coords import coordinate_hook

        ref.model.visual.register_forward_pre_hook(coordinate_hook, with_kwargs=True)
    return ref.eval().requires_grad_(False)


class LensGRPOTrainer(LensCheckpointMixin, GRPOTrainer):
    """GRPO + mask reward + mask loss for a :class:`LensModel` (see module docstring).

    Arguments:
      model (LensModel): the policy (e.g. a stage-1 checkpoint loaded with
        ``lens_ros.model.build.load_model``).
      args (LensGRPOConfig): the configuration.
      train_dataset: a ``datasets.Dataset`` of GRPO rows (``batching.GrpoRows.as_hf_dataset``).
      processing_class: the checkpoint's ImageOnlyQwen2_5_VLProcessor.
      reward_funcs: reward functions; default ``[REWARD_FUNCS[n] for n in args.rewards]``.
      row_source: the object holding ``set_epoch`` for per-epoch sentence draws (optional).
    """

    def __init__(self, model: LensModel, args: LensGRPOConfig, train_dataset, processing_class,
                 reward_funcs=None, callbacks=None, eval_dataset=None, row_source=None,
                 peft_config=None):
        if not isinstance(model, LensModel):
            raise TypeError(f"LensGRPOTrainer trains a LensModel, got {type(model).__name__}; "
                            "load one with lens_ros.model.build.load_model(path)")
        if not isinstance(args, LensGRPOConfig):
            raise TypeError("args must be a LensGRPOConfig")
        lora = args.lora_r > 0 or peft_config is not None
        trainable = configure_trainable(model, train_llm=True,
                                        train_vision=args.train_vision_tower and not lora,
                                        train_sam_decoder=args.train_sam_decoder)
        if reward_funcs is None:
            reward_funcs = [REWARD_FUNCS[n] for n in args.rewards]
        self._needs_pred_mask = any(f is mask_iou_reward for f in reward_funcs)
        ref = reference_model(model) if args.beta != 0.0 and not lora else None
        if args.lora_r > 0 and peft_config is None:
            from peft import LoraConfig

            peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha,
                                     lora_dropout=args.lora_dropout, target_modules=LORA_TARGETS)
        name_or_path = model.name_or_path
        if args.use_vllm:
            model.name_or_path = args.vllm_model_path  # what TRL's vLLM engine loads at start
        beta, args.beta = args.beta, 0.0  # TRL would reload the reference from name_or_path
        callbacks = list(callbacks or []) + [MetricsFileCallback(args.output_dir)]
        if row_source is not None:
            callbacks.append(EpochCallback(row_source))
        try:
            super().__init__(model=model, reward_funcs=reward_funcs, args=args,
                             train_dataset=train_dataset, eval_dataset=eval_dataset,
                             processing_class=processing_class, callbacks=callbacks,
                             peft_config=peft_config)
        finally:
            args.beta = beta
            model.name_or_path = name_or_path
        self.beta = beta
        self.lens_model = model
        persist_out_of_forward_params(self, model)  # ZeRO-3: _predict_masks runs outside forward
        if is_peft_model(self.model):  # PEFT froze everything else: the head and SAM still learn
            for name, p in model.named_parameters():
                if name.startswith(HEAD_PREFIXES + ("sam.",)) and name in trainable:
                    p.requires_grad_(True)
        if ref is not None:
            if args.disable_dropout:
                disable_dropout_in_model(ref)
            add_fused_lm_head(ref, temperature=self.temperature)
            if self.is_deepspeed_enabled:
                ref = prepare_deepspeed(ref, self.accelerator)
            elif self.is_fsdp_enabled:
                ref = prepare_fsdp(ref, self.accelerator)
            else:
                ref = self.accelerator.prepare_model(ref, evaluation_mode=True)
        self.ref_model = ref
        install_lens_forward(model)
        if self.use_vllm:
            self._vllm_llm_weights_only()
        self._lens_request: LensPassRequest | None = None
        self._rollout_rows: list[dict] = []
        self._mm_fields: dict = {}
        self._sam_features: dict = {}

    # ---- vLLM ------------------------------------------------------------------------------
    def _vllm_llm_weights_only(self) -> None:
        """Sync only the Qwen weights; TRL pushes them to every rank's engine (colocate) or to the
        server (server mode) once per optimizer step, so all rollouts are on-policy."""
        gen = self.vllm_generation
        iterate = gen._iter_named_params

        def llm_only():
            for name, param in iterate():  # iterate all: ZeRO-3 gathers are collective
                if not name.startswith(HEAD_PREFIXES + ("sam.",)):
                    yield name, param

        gen._iter_named_params = llm_only

    # ---- rollouts ----------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        self._rollout_rows = inputs
        out = super()._generate_and_score_completions(inputs)
        device = self.accelerator.device
        out["gt_mask"] = [torch.as_tensor(np.asarray(x["gt_mask"], dtype=bool), device=device)
                          for x in inputs]
        out["sam_key"] = [str(x["row_id"]) for x in inputs]
        out["mask_keep"] = self._mask_loss_rows(out["completion_ids"], out["completion_mask"],
                                                inputs)
        return out

    def _mask_loss_rows(self, completion_ids, completion_mask, rows) -> list[bool]:
        """Per rollout, whether the joint mask loss applies: its answer box has IoU >=
        ``mask_loss_min_box_iou`` with the ground-truth ``solution`` box (all rows at 0)."""
        threshold = self.args.mask_loss_min_box_iou
        if threshold <= 0:
            return [True] * len(rows)
        tok = self.processing_class.tokenizer
        keep = []
        for ids, m, row in zip(completion_ids, completion_mask, rows, strict=True):
            text = tok.decode(ids[m.bool()].tolist(), skip_special_tokens=False)
            keep.append(answer_box_iou(text, row["solution"]) >= threshold)
        return keep

    def _tokenize_prompts(self, prompts):
        prompt_ids, images, fields = super()._tokenize_prompts(prompts)
        self._mm_fields = fields
        return prompt_ids, images, fields

    def _generate(self, prompts):
        result = list(super()._generate(prompts))
        prompt_ids, completion_ids, extra = result[0], result[1], dict(result[5] or {})
        rows = self._rollout_rows
        if len(rows) != len(prompt_ids):
            raise RuntimeError(f"{len(prompt_ids)} rollouts for {len(rows)} rows; custom "
                               "rollout_func / tools are not supported by LensGRPOTrainer")
        model = self.lens_model
        keys = [str(r["row_id"]) for r in rows]
        with gathered(model):  # ZeRO-3: these passes run outside the engine's forward
            self._sam_features = sam_features_by_key(
                model, keys, {str(r["row_id"]): r["rgb"] for r in rows},
                lambda rgb: sam_pixels(np.asarray(rgb), model.lens_config))
            if self._needs_pred_mask:
                extra["pred_mask"] = self._predict_masks(prompt_ids, completion_ids, rows, keys)
        result[5] = extra
        return tuple(result)

    def _mm_tensor(self, key: str):
        value = self._mm_fields.get(key)
        if value is None:
            return None
        value = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.array(value))
        return value.to(self.accelerator.device)

    @torch.no_grad()
    def _predict_masks(self, prompt_ids, completion_ids, rows, keys) -> list[np.ndarray]:
        """Each rollout's mask at ground-truth resolution (logits > 0), for the mask reward."""
        model, device = self.lens_model, self.accelerator.device
        tok = self.processing_class.tokenizer
        pids = [torch.tensor(p) for p in prompt_ids]
        cids = [torch.tensor(c, dtype=torch.long) for c in completion_ids]
        ids = torch.cat([pad(pids, tok.pad_token_id, "left"), pad(cids, tok.pad_token_id)], 1)
        attn = torch.cat([pad([torch.ones_like(p) for p in pids], 0, "left"),
                          pad([torch.ones_like(c) for c in cids], 0)], 1)
        pixel_values, grid = self._mm_tensor("pixel_values"), self._mm_tensor("image_grid_thw")
        rows_per_image = grid.prod(-1).tolist()
        starts = np.cumsum([0] + rows_per_image)
        chunk = max(1, self.args.per_device_train_batch_size)
        masks = []
        for s in range(0, len(rows), chunk):
            e = min(s + chunk, len(rows))
            q = model.query_hidden_states(ids[s:e].to(device), attn[s:e].to(device),
                                          pixel_values[starts[s]:starts[e]], grid[s:e])
            feats = stack_features(self._sam_features[k] for k in keys[s:e])
            low = model.decode_masks(model.sam_prompt(q), feats, multimask_fallback=False,
                                     boxes=self._answer_boxes(cids[s:e], grid[s:e]))
            for i, row in enumerate(rows[s:e]):
                hw = np.asarray(row["gt_mask"]).shape[:2]
                up = model.upsample_masks(low.low_res_logits[i:i + 1], hw)[0, 0]
                masks.append((up > 0).cpu().numpy())
        return masks

    def _answer_boxes(self, completion_ids, grid):
        """Demo deviation ``box_prompt``: each rollout's answer box for SAM (else None)."""
        cfg = self.lens_model.lens_config
        if not cfg.box_prompt or grid is None:
            return None
        from lens_ros.model.coords import answer_boxes, grid_hw

        hw = grid_hw(grid, int(cfg.vision_config["patch_size"]))
        return answer_boxes(self.processing_class.tokenizer, completion_ids, hw,
                            cfg.sam.image_size).to(self.accelerator.device)

    # ---- loss --------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
        request, self._lens_request = self._lens_request, None
        if model is self.ref_model:
            return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        if request is None and self.args.policy_positions == "1d":
            request = LensPassRequest("1d", self.temperature)
        if request is None:
            return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        return super()._get_per_token_logps_and_entropies(CallWithLens(model, request), *args,
                                                          **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        feats = stack_features(self._sam_features[k] for k in inputs["sam_key"])
        request = LensPassRequest(self.args.policy_positions, self.temperature, feats)
        request.boxes = self._answer_boxes(inputs["completion_ids"], inputs.get("image_grid_thw"))
        self._lens_request = request
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if request.low_res_logits is None:
            raise RuntimeError("the LENS policy pass did not produce masks; is the model's "
                               "forward patched (install_lens_forward)?")
        keep = [i for i, k in enumerate(inputs["mask_keep"]) if k]
        ml = mask_loss([request.low_res_logits[i] for i in keep],
                       [inputs["gt_mask"][i] for i in keep],
                       self.args.bce_loss_weight, self.args.dice_loss_weight)
        total = ml.total
        if not keep:
            # no rollout passed the gate: a zero that still depends on the mask path, so every
            # parameter reached by the real loss gets a (zero) gradient and DDP's reducer, which
            # expects all of them each step (find_unused_parameters off), stays in step
            total = 0.0 * torch.stack([lg.float().sum() for lg in request.low_res_logits]).sum()
        mode = "train" if self.model.training else "eval"
        norm = self.current_gradient_accumulation_steps if mode == "train" else 1
        kept = torch.tensor(len(keep) / max(1, len(inputs["mask_keep"])))
        for name, value in (("mask_loss", ml.total), ("mask_bce", ml.bce),
                            ("mask_dice", ml.dice), ("mask_loss_share", kept)):
            self._metrics[mode][name].append(
                self.accelerator.gather(value.detach().reshape(1)).mean().item())
        return loss + self.args.mask_loss_weight * total / norm
