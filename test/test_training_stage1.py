"""Stage 1 on the tiny LENS model: the mask loss falls on a fixed batch, only the head trains."""
import numpy as np
import pytest
import torch

from lens_ros.model.build import load_checkpoint
from lens_ros.training.batching import REFERENCE_ANSWER_TEMPLATE, teacher_forced_batch
from lens_ros.training.configs import LensStage1Config
from lens_ros.data.sources import ItemDataset, ReferSegSource
from lens_ros.training.stage1 import LensStage1Trainer
from lens_ros.data.toydata import write_toy_refer_seg


class FixedItems:
    """The same few items every step (a fixed small batch)."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def fixed_items(tmp_path_factory):
    root = write_toy_refer_seg(tmp_path_factory.mktemp("refer_seg"), n_images=2, size=(48, 64))
    items = ItemDataset([ReferSegSource(root, "refcoco")])
    return FixedItems(items[i] for i in range(4))


def test_stage1_reduces_mask_loss_on_a_fixed_batch(tiny_model_dir, fixed_items, tmp_path):
    loaded = load_checkpoint(tiny_model_dir)
    model = loaded.model.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if n.startswith(("model.", "sam."))}
    # 20 steps of the whole 4-item batch; lr 1e-3 constant: a tiny random model, 20 steps
    args = LensStage1Config(output_dir=str(tmp_path), use_cpu=True, bf16=False,
                            report_to="none", per_device_train_batch_size=4,
                            gradient_accumulation_steps=1, max_steps=20, learning_rate=1e-3,
                            warmup_steps=0, lr_scheduler_type="constant", logging_steps=1,
                            save_strategy="no", seed=0, dataloader_num_workers=0)
    trainer = LensStage1Trainer(model, args, fixed_items, loaded.processor)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])  # a real decrease, not noise
    assert "mask_bce" in trainer.state.log_history[0]
    # the language model, the vision tower and SAM did not move; the head did
    params = dict(model.named_parameters())
    assert all(torch.equal(v, params[n].detach()) for n, v in frozen.items())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("learnable_query", "connector.", "conv_1d.",
                                           "proj_to_sam.")) for n in trainable)


def test_teacher_forced_batch_holds_the_reference_answer(tiny_model_dir, fixed_items):
    loaded = load_checkpoint(tiny_model_dir, with_processor=True)
    item = fixed_items[0]
    b = teacher_forced_batch([item], loaded.processor, loaded.model.lens_config)
    text = loaded.processor.tokenizer.decode(b["input_ids"][0])
    assert text.endswith("<|box_end|><|im_end|>")
    assert f"<|object_ref_start|>{item.question}.<|object_ref_end|><|box_start|>(" in text
    assert text.count("<|image_pad|>") == int(b["image_grid_thw"][0].prod()) // 4
    assert b["sam_pixels"].shape[-2:] == (256, 256)
    assert tuple(b["gt_masks"][0].shape) == item.gt_mask.shape
    assert "{question}" in REFERENCE_ANSWER_TEMPLATE


def test_activation_checkpointing_trains_the_queries_through_the_frozen_llm(tiny_model_dir,
                                                                           fixed_items,
                                                                           tmp_path):
    """config/train_stage1.yaml turns activation checkpointing on (as the reference): the
    queries' gradient must still cross the frozen, checkpointed LLM, and one step gives the same
    update as without checkpointing."""
    after = {}
    for ckpt in (False, True):
        loaded = load_checkpoint(tiny_model_dir)
        model = loaded.model.train()
        args = LensStage1Config(output_dir=str(tmp_path / str(ckpt)), use_cpu=True, bf16=False,
                                report_to="none", per_device_train_batch_size=4, max_steps=1,
                                learning_rate=1e-3, warmup_steps=0, save_strategy="no", seed=0,
                                dataloader_num_workers=0, activation_checkpointing=ckpt)
        trainer = LensStage1Trainer(model, args, fixed_items, loaded.processor)
        trainer.train()
        assert model.is_activation_checkpointing == ckpt
        after[ckpt] = model.learnable_query.detach().clone()
    start = load_checkpoint(tiny_model_dir).model.learnable_query.detach()
    assert not torch.equal(after[True], start)
    assert torch.allclose(after[True], after[False], atol=1e-6)
