"""Configuration of ``lens-train``: data sources, the starting model, and stage 1.

Every field has a ``help`` text (shown by ``lens-train stage1 --help``); the YAML files in
``config/`` set them by name. Stage 2 is configured by :class:`~lens_ros.training.grpo_config.
LensGRPOConfig`. Defaults are the paper's released runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments

from lens_ros.training.batching import REFERENCE_ANSWER_TEMPLATE

log = logging.getLogger(__name__)


def default_report_to() -> list[str]:
    """``["tensorboard"]`` when TensorBoard is installed, else ``[]``; metrics.jsonl/csv are
    written in every case (``MetricsFileCallback``)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return []
    return ["tensorboard"]


@dataclass
class DataConfig:
    """Where the training items come from (all sources are concatenated)."""

    refer_seg_root: str | None = field(
        default=None, metadata={"help": "The `refer_seg` folder (LISA layout) holding refcoco/, "
                                "refcoco+/, refcocog/ and images/mscoco/images/train2014/."})
    refer_seg_datasets: list[str] = field(
        default_factory=lambda: ["refcoco", "refcoco+", "refcocog"],
        metadata={"help": "Datasets under refer_seg_root (refs file: unc, unc, umd)."})
    refer_seg_split: str = field(default="train", metadata={"help": "Split of the refs to use."})
    image_dir: str | None = field(
        default=None, metadata={"help": "COCO train2014 image folder; default "
                                "refer_seg_root/images/mscoco/images/train2014 (or the dataset's "
                                "own images/ folder, as lens_ros.synthetic exports it)."})
    sample_per: str = field(
        default="ref", metadata={"help": "'ref': one item per ref, sentence drawn per epoch "
                                 "(the reference); 'sentence': one item per sentence."})
    reason_seg_dirs: list[str] = field(
        default_factory=list, metadata={"help": "ReasonSeg-style folders (*.jpg + *.json)."})
    synthetic_items: int = field(
        default=0, metadata={"help": "Add this many procedural scenes from lens_ros.synthetic "
                             "(train split)."})
    synthetic_dense_fraction: float = field(
        default=0.0, metadata={"help": "Share of synthetic items that are 'list the objects' "
                               "samples."})
    toy_images: int = field(
        default=0, metadata={"help": "Generate a tiny shapes dataset with this many images in "
                             "OUTPUT_DIR/toy_data and train on it (smoke runs, CPU)."})
    max_items: int | None = field(
        default=None, metadata={"help": "Use only the first N items (after concatenation)."})
    sentence_seed: int = field(default=0,
                               metadata={"help": "Seed of the per-epoch sentence draw."})

    def __post_init__(self):
        if self.sample_per not in ("ref", "sentence"):
            raise ValueError(f"sample_per={self.sample_per!r}: use 'ref' or 'sentence'")
        for name in ("synthetic_items", "toy_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")


@dataclass
class ModelArguments:
    """The model training starts from."""

    model_path: str | None = field(
        default=None, metadata={"help": "LENS checkpoint directory to start from (stage 1: a "
                                "LENS-architecture model built from Qwen2.5-VL + SAM 2 weights; "
                                "stage 2: a stage-1 output)."})
    preset: str | None = field(
        default=None, metadata={"help": "Start from a random-weight preset instead (e.g. 'tiny' "
                                "for smoke runs); ignored when model_path is set."})
    resume: bool = field(
        default=False, metadata={"help": "Resume from the last checkpoint-N in output_dir (step "
                                 "counter, optimizer, scheduler and RNG state continue)."})


@dataclass
class LensStage1Config(TrainingArguments):
    """Stage 1: LLM frozen; queries, connector, conv_1d, proj_to_sam (optionally the SAM decoder)
    trained with BCE + Dice on teacher-forced ground-truth answers. Inherited fields: see
    ``transformers.TrainingArguments``; the paper's values are the defaults below."""

    bce_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the BCE term."})
    dice_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the Dice term."})
    train_sam_decoder: bool = field(
        default=False, metadata={"help": "Also train the SAM 2 mask decoder (the reference keeps "
                                 "SAM frozen in stage 1)."})
    answer_template: str = field(
        default=REFERENCE_ANSWER_TEMPLATE,
        metadata={"help": "Teacher-forced answer; fields {question}, {x1}, {y1}, {x2}, {y2} "
                  "(integer pixels of the LLM image). Default: the reference's Qwen grounding "
                  "syntax."})
    reasoning_prompt: bool = field(
        default=False, metadata={"help": "Use the <think> question template in the prompt."})

    report_to: None | str | list[str] = field(
        default_factory=default_report_to,
        metadata={"help": "Logging integrations; default TensorBoard when installed."})
    learning_rate: float = field(default=3e-5, metadata={"help": "AdamW learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "LR schedule."})
    warmup_steps: float = field(default=150, metadata={"help": "Linear warm-up steps."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch per device."})
    gradient_accumulation_steps: int = field(default=2, metadata={"help": "Micro-steps per step."})
    num_train_epochs: float = field(default=25.0, metadata={"help": "Epochs."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_steps: float = field(default=500, metadata={"help": "Checkpoint every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep items intact (they are not a datasets table)."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every trainable parameter gets a gradient each step."})

    def __post_init__(self):
        super().__post_init__()
        for name in ("bce_loss_weight", "dice_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        try:
            self.answer_template.format(question="q", x1=0, y1=0, x2=1, y2=1)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"answer_template {self.answer_template!r} is not a valid format "
                             f"string with fields question, x1, y1, x2, y2: {err}") from None


def build_items(cfg: DataConfig, output_dir: str | None = None):
    """The concatenated :class:`ItemDataset` of every configured source, and its skip counter."""
    from pathlib import Path

    from lens_ros.data.sources import ItemDataset, ReasonSegSource, ReferSegSource
    from lens_ros.data.items import SkipCounter

    skips = SkipCounter()
    sources = []
    root = cfg.refer_seg_root
    if cfg.toy_images:
        from lens_ros.data.toydata import write_toy_refer_seg

        root = str(write_toy_refer_seg(Path(output_dir or ".") / "toy_data", cfg.toy_images,
                                       seed=cfg.sentence_seed))
    names = ["refcoco"] if cfg.toy_images else cfg.refer_seg_datasets
    if root:
        for name in names:
            sources.append(ReferSegSource(root, name, split=cfg.refer_seg_split,
                                          image_dir=cfg.image_dir, per=cfg.sample_per,
                                          seed=cfg.sentence_seed, skips=skips))
    sources += [ReasonSegSource(d, per="image" if cfg.sample_per == "ref" else "sentence",
                                seed=cfg.sentence_seed) for d in cfg.reason_seg_dirs]
    if cfg.synthetic_items:
        from lens_ros.synthetic.dataset import SyntheticReferDataset

        sources.append(SyntheticReferDataset("train", size=cfg.synthetic_items,
                                             dense_fraction=cfg.synthetic_dense_fraction))
    if not sources:
        raise ValueError("no data source configured: set refer_seg_root, reason_seg_dirs, "
                         "synthetic_items or toy_images")
    items = ItemDataset(sources, skips=skips)
    if cfg.max_items is not None and cfg.max_items < len(items):
        items = LimitedItems(items, cfg.max_items)
    log.info("training items: %d (skipped while indexing: %s)", len(items), skips.as_dict())
    return items, skips


class LimitedItems:
    """The first ``n`` items of a dataset (``set_epoch`` forwarded)."""

    def __init__(self, items, n: int):
        self.items, self.n = items, int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.items[i]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.items, "set_epoch"):
            self.items.set_epoch(epoch)
