"""``LensGRPOConfig``: TRL's ``GRPOConfig`` with LENS' stage-2 defaults and the few fields it adds.

Defaults reproduce the released stage-2 run: G = 8 rollouts,
temperature 0.9, top-p 0.9, top-k 50, up to 768 new tokens, k3 KL to a frozen reference with
beta = 0.04 (no importance-weight correction of the KL), advantages ``(r - mean) / (std + 1e-4)``
per group (unbiased std), the original sequence-mean GRPO loss, one policy update per
generation, LR 3e-6, per-device batch 8 x gradient accumulation 4, 8 epochs, bf16, gradient
checkpointing, checkpoints every 500 steps. Only our fields are added below; every inherited
field keeps TRL's meaning (see TRL's GRPOConfig documentation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from lens_ros.training.configs import default_report_to
from lens_ros.training.rewards import REWARD_FUNCS

POLICY_POSITIONS = ("mrope", "1d")


@dataclass
class LensGRPOConfig(GRPOConfig):
    """GRPO for LENS. Inherited fields: see ``trl.GRPOConfig``; ours are documented per field."""

    # ---- our fields ---------------------------------------------------------------------------
    rewards: list[str] = field(
        default_factory=lambda: ["box_iou", "mask_iou"],
        metadata={"help": "Reward functions by name, summed with `reward_weights`: "
                  "'box_iou' (IoU² of the answer box), 'mask_iou' (IoU² of the predicted mask), "
                  "'think_format' (0/1 <think>...</think><answer>...</answer>). The released "
                  "RefCOCO run uses box_iou + mask_iou; its chain-of-thought runs add "
                  "think_format."})
    reasoning_prompt: bool = field(
        default=False,
        metadata={"help": "Ask for <think>...</think><answer>...</answer> (LENS' samr1_v4 "
                  "template) instead of the plain box question."})
    policy_positions: str = field(
        default="mrope",
        metadata={"help": "Positions of the policy log-prob pass. 'mrope' (default): the same "
                  "3-D M-RoPE positions as generation and the reference model, so rollouts are "
                  "on-policy and the KL starts at 0; the mask head runs in a second pass with 1-D "
                  "positions, as at inference. '1d': the reference implementation's single pass "
                  "with 1-D positions for log-probs and masks (cheaper; the KL then compares "
                  "1-D policy log-probs with M-RoPE reference log-probs). See docs/training.md."})
    mask_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Weight of the BCE + Dice mask loss on all rollouts, added to the GRPO "
                  "loss (the reference's res_loss_ratio, 1:1)."})
    mask_loss_min_box_iou: float = field(
        default=0.0,
        metadata={"help": "Apply the mask loss only to rollouts whose answer box has at least this "
                  "IoU with the ground-truth box (0 = every rollout, as the reference). Useful "
                  "with box_prompt models: a wrong-object box as SAM prompt paired with the "
                  "target's mask teaches the decoder to ignore the box (demo recipe: 0.5)."})
    bce_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the BCE term inside the mask loss."})
    dice_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the Dice term (smooth 1) inside the mask loss."})
    train_vision_tower: bool = field(
        default=True,
        metadata={"help": "Train the Qwen vision tower. The reference's stage 2 trains it (its "
                  "freeze flag is a no-op); False saves memory."})
    train_sam_decoder: bool = field(
        default=True,
        metadata={"help": "Train the SAM 2 mask decoder and prompt embedding. The SAM image "
                  "encoder is always frozen."})
    lora_r: int = field(
        default=0,
        metadata={"help": "LoRA rank on the language model's attention and MLP projections; 0 "
                  "trains the full model. With LoRA the KL reference is the model with the "
                  "adapter disabled (no second copy in memory)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha (lora_r > 0)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (lora_r > 0)."})
    vllm_model_path: str | None = field(
        default=None,
        metadata={"help": "With use_vllm: a Qwen2.5-VL-format directory vLLM loads at start (the "
                  "LLM part of the initial model; `lens-train export-llm` writes one). Every "
                  "optimizer step the current LLM weights are pushed to the vLLM engine of EVERY "
                  "rank (colocate mode) or to the server (server mode); LENS head and SAM weights "
                  "are not sent."})

    # ---- paper values for inherited fields ----------------------------------------------------
    num_generations: int | None = field(default=8, metadata={"help": "Rollouts per prompt (G)."})
    temperature: float = field(default=0.9, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling threshold."})
    top_k: int = field(default=50, metadata={"help": "Top-k sampling (0 disables it)."})
    max_completion_length: int | None = field(
        default=768, metadata={"help": "Maximum generated tokens per rollout."})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient (k3 estimator)."})
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={"help": "Multiply the KL by the importance ratio (TRL's default True); the "
                  "reference uses the plain k3 KL."})
    vllm_importance_sampling_correction: bool = field(
        default=False,
        metadata={"help": "With use_vllm: reweight by the ratio of trainer to vLLM log-probs "
                  "(TRL's default True). False = the reference, which has no such correction; "
                  "without vLLM it has no effect."})
    loss_type: str = field(
        default="grpo",
        metadata={"help": "'grpo': per-sequence token mean, then batch mean (the reference)."})
    report_to: None | str | list[str] = field(
        default_factory=default_report_to,
        metadata={"help": "Logging integrations; default TensorBoard when installed."})
    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Rollouts per device per micro-step (one group of 8)."})
    gradient_accumulation_steps: int = field(
        default=4, metadata={"help": "Micro-steps per optimizer step."})
    num_train_epochs: float = field(default=8.0, metadata={"help": "Epochs over the prompts."})
    save_steps: float = field(default=500, metadata={"help": "Checkpoint every N steps."})
    logging_steps: float = field(default=1, metadata={"help": "Log metrics every N steps."})
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Every trainable parameter gets a gradient in the single DDP forward "
                  "of a LENS step, so the unused-parameter search stays off (with it on, DDP on gloo fails: 'marked as ready twice')."})

    def __post_init__(self):
        super().__post_init__()
        unknown = [r for r in self.rewards if r not in REWARD_FUNCS]
        if not self.rewards or unknown:
            raise ValueError(f"rewards={self.rewards}: unknown or empty; choose from "
                             f"{sorted(REWARD_FUNCS)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} entries for "
                             f"{len(self.rewards)} rewards {self.rewards}; give one per reward")
        if self.policy_positions not in POLICY_POSITIONS:
            raise ValueError(f"policy_positions={self.policy_positions!r}: use one of "
                             f"{POLICY_POSITIONS}")
        if not 0.0 <= self.mask_loss_min_box_iou <= 1.0:
            raise ValueError(f"mask_loss_min_box_iou={self.mask_loss_min_box_iou} must be in "
                             "[0, 1] (0 = the mask loss on every rollout)")
        for name in ("mask_loss_weight", "bce_loss_weight", "dice_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lora_r < 0:
            raise ValueError(f"lora_r={self.lora_r} must be >= 0 (0 = full fine-tuning)")
        if self.use_vllm and not self.vllm_model_path:
            raise ValueError("use_vllm=True needs vllm_model_path: a Qwen2.5-VL-format directory "
                             "of the initial LLM weights (write one with `lens-train export-llm "
                             "CHECKPOINT OUT`)")
        if self.cast_lm_head_to_fp32:
            raise ValueError("cast_lm_head_to_fp32=True is not supported by LensGRPOTrainer (the "
                             "reference model is built by the trainer); set it to False")
