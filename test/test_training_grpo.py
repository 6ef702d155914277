"""Stage-2 GRPO on the tiny LENS model with images (real TRL GRPOTrainer, CPU).

Shrunk settings and why: G=4 and per-device batch 4 (one prompt per step, 2 cores),
max_completion_length 8 (a random policy never stops), lr 1e-3 (visible changes in
2 steps), gradient checkpointing and bf16 off (TRL's GPU defaults).
"""
import json

import numpy as np
import pytest
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from lens_ros.model.build import load_checkpoint
from lens_ros.training.batching import GrpoRows
from lens_ros.data.sources import ItemDataset, ReferSegSource
from lens_ros.training.grpo import LensGRPOTrainer
from lens_ros.training.grpo_config import LensGRPOConfig
from lens_ros.training.rewards import box_iou_reward, completion_text, mask_iou_reward
from lens_ros.data.toydata import write_toy_refer_seg


def varied_reward(completions, **kwargs):
    """A reward with variance inside every group, so advantages are non-zero on a random
    policy (a format reward scores a whole group alike): a hash of the generated text."""
    return [(sum(map(ord, completion_text(c))) % 13) / 13.0 for c in completions]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return write_toy_refer_seg(tmp_path_factory.mktemp("refer_seg"), n_images=4, size=(48, 64))


def make_trainer(model_dir, root, out, reward_funcs=None, callbacks=(), **overrides):
    loaded = load_checkpoint(model_dir)
    model, processor = loaded.model.train(), loaded.processor
    rows = GrpoRows(ItemDataset([ReferSegSource(root, "refcoco")]), processor)
    settings = dict(output_dir=str(out), use_cpu=True, bf16=False, report_to="none",
                    per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
                    max_steps=2, learning_rate=1e-3, save_strategy="no",
                    activation_checkpointing=False, temperature=1.0, dataloader_num_workers=0,
                    seed=0)
    settings.update(overrides)
    args = LensGRPOConfig(**settings)
    trainer = LensGRPOTrainer(model, args, rows.as_hf_dataset(), processor,
                              reward_funcs=reward_funcs, row_source=rows,
                              callbacks=list(callbacks))
    return model, trainer


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_grpo_step_with_images_updates_policy_and_mask_head(tiny_model_dir, toy_root, tmp_path):
    rewards = [box_iou_reward, mask_iou_reward, varied_reward]
    model, trainer = make_trainer(tiny_model_dir, toy_root, tmp_path, reward_funcs=rewards)
    before = snapshot(model)
    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    for h in logs:  # every reward is logged separately, plus the mask-loss terms
        for key in ("rewards/box_iou_reward/mean", "rewards/mask_iou_reward/mean",
                    "rewards/varied_reward/mean", "mask_loss", "mask_bce", "mask_dice"):
            assert key in h and np.isfinite(h[key])
        assert h["grad_norm"] > 0
        assert np.isfinite(h["kl"])
    assert logs[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 1
    advantages = np.array(trainer._logs["advantages"])
    assert np.abs(advantages).max() > 0.1  # rewards differed inside the group
    changed = {n for n, p in model.named_parameters()
               if n in before and not torch.equal(before[n], p.detach())}
    assert changed == set(before)  # every trainable parameter moved
    for part in ("model.language_model.layers.0.self_attn.q_proj.weight", "learnable_query",
                 "connector.blocks.0.attn.qkv.weight", "proj_to_sam.2.weight",
                 "sam.sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight"):
        assert part in changed
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]


def test_mask_loss_is_what_trains_the_connector(tiny_model_dir, toy_root, tmp_path):
    # the rewards are not differentiable: only the mask loss can reach the LENS head
    model, trainer = make_trainer(tiny_model_dir, toy_root, tmp_path, max_steps=1,
                                  mask_loss_weight=0.0, rewards=["box_iou", "mask_iou"])
    before = snapshot(model)
    trainer.train()
    for name in ("connector.blocks.0.attn.qkv.weight", "learnable_query", "conv_1d.weight"):
        assert torch.equal(before[name], dict(model.named_parameters())[name].detach())
    model2, trainer2 = make_trainer(tiny_model_dir, toy_root, tmp_path / "on", max_steps=1,
                                    rewards=["box_iou", "mask_iou"])
    grads = []
    conn = model2.connector.blocks[0].attn.qkv.weight
    conn.register_hook(lambda g: grads.append(g.norm().item()))
    trainer2.train()
    assert grads and grads[0] > 0


def test_mask_loss_gate_skips_rollouts_whose_box_misses(tiny_model_dir, toy_root, tmp_path):
    # a random tiny policy answers no box within 8 tokens: with the gate at IoU 0.5 no rollout
    # qualifies, so (as with weight 0) the non-differentiable rewards cannot reach the head
    model, trainer = make_trainer(tiny_model_dir, toy_root, tmp_path, max_steps=1,
                                  mask_loss_min_box_iou=0.5, rewards=["box_iou", "mask_iou"])
    before = snapshot(model)
    trainer.train()
    assert torch.equal(before["learnable_query"],
                       dict(model.named_parameters())["learnable_query"].detach())
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs[0]["mask_loss_share"] == 0.0 and logs[0]["mask_loss"] == 0.0
    rows = [{"solution": [0, 0, 10, 10]}, {"solution": [0, 0, 10, 10]}]
    tok = trainer.processing_class.tokenizer
    texts = ['<answer>{"bbox_2d": [0, 0, 10, 10]}</answer>', '<answer>[20, 20, 30, 30]</answer>']
    ids = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt",
              padding_side="right")
    assert trainer._mask_loss_rows(ids["input_ids"], ids["attention_mask"], rows) == [True, False]
    with pytest.raises(ValueError, match="mask_loss_min_box_iou"):
        LensGRPOConfig(output_dir=str(tmp_path), mask_loss_min_box_iou=1.5, use_cpu=True,
                       bf16=False)


def test_reference_positions_mode_runs_one_pass(tiny_model_dir, toy_root, tmp_path):
    model, trainer = make_trainer(tiny_model_dir, toy_root, tmp_path, max_steps=1,
                                  policy_positions="1d", reward_funcs=[varied_reward])
    before = snapshot(model)
    trainer.train()
    h = trainer.state.log_history[0]
    assert np.isfinite(h["kl"]) and h["grad_norm"] > 0 and np.isfinite(h["mask_loss"])
    assert not torch.equal(before["connector.blocks.0.attn.qkv.weight"],
                           model.connector.blocks[0].attn.qkv.weight.detach())


def test_lora_trains_adapter_head_and_decoder_only(tiny_model_dir, toy_root, tmp_path):
    model, trainer = make_trainer(tiny_model_dir, toy_root, tmp_path, max_steps=1, lora_r=4,
                                  reward_funcs=[varied_reward, mask_iou_reward],
                                  save_strategy="steps", save_steps=1)
    base_q = model.model.language_model.layers[0].self_attn.q_proj.base_layer.weight.clone()
    head = model.connector.blocks[0].attn.qkv.weight.detach().clone()
    trainer.train()
    assert torch.equal(base_q, model.model.language_model.layers[0].self_attn.q_proj
                       .base_layer.weight)
    assert not torch.equal(head, model.connector.blocks[0].attn.qkv.weight)
    lora_b = model.model.language_model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert lora_b.abs().sum() > 0  # starts at zero
    assert np.isfinite(trainer.state.log_history[0]["kl"])
    reloaded = load_checkpoint(tmp_path / "checkpoint-1").model  # merged LENS checkpoint
    assert torch.equal(reloaded.connector.blocks[0].attn.qkv.weight,
                       model.connector.blocks[0].attn.qkv.weight.detach())


class KillAtStep(TrainerCallback):
    """Interrupts training like a kill: nothing after this step is saved."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated kill at step {self.step}")


def test_interrupted_run_resumes_to_the_same_total_steps(tiny_model_dir, toy_root, tmp_path):
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, lr_scheduler_type="linear")
    _, first = make_trainer(tiny_model_dir, toy_root, tmp_path, callbacks=[KillAtStep(3)],
                            **common)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    last = get_last_checkpoint(str(tmp_path))
    assert last.endswith("checkpoint-2")
    model, second = make_trainer(tiny_model_dir, toy_root, tmp_path, **common)
    second.train(resume_from_checkpoint=last)
    assert second.state.global_step == 4
    steps = {float(s["step"]) for s in second.optimizer.state.values()}
    assert steps == {4.0}  # AdamW state continued from step 2, not restarted
    assert second.lr_scheduler.last_epoch == 4
    assert (tmp_path / "checkpoint-4" / "model.safetensors").is_file()
    logged = [json.loads(line)["step"] for line in
              (tmp_path / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert logged == [1, 2, 3, 4]  # each step once, across the interruption
