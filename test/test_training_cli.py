"""lens-train: YAML configs (paper defaults), validation, an end-to-end CPU run, resume through
the CLI, plots, the LLM export, and the accelerate/DeepSpeed files."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lens_ros.training.cli import main, parse_stage_args
from lens_ros.training.configs import DataConfig, LensStage1Config
from lens_ros.training.grpo_config import LensGRPOConfig

CONFIG = Path(__file__).resolve().parents[1] / "config"
PAPER_GRPO = {"num_generations": 8, "temperature": 0.9, "top_p": 0.9, "top_k": 50,
              "max_completion_length": 768, "beta": 0.04, "loss_type": "grpo",
              "scale_rewards": "group", "learning_rate": 3e-6, "per_device_train_batch_size": 8,
              "gradient_accumulation_steps": 4, "num_train_epochs": 8, "mask_loss_weight": 1.0,
              "use_bias_correction_kl": False, "rewards": ["box_iou", "mask_iou"],
              "vllm_importance_sampling_correction": False}


def test_grpo_yaml_holds_the_paper_values_and_matches_the_defaults(tmp_path):
    # --use_cpu: the file asks for bf16, which transformers refuses on a GPU-less machine
    _, data, args = parse_stage_args("grpo", [str(CONFIG / "train_grpo.yaml")],
                                     ["--output_dir", str(tmp_path), "--use_cpu", "true"])
    defaults = LensGRPOConfig(output_dir=str(tmp_path), use_cpu=True)
    for key, value in PAPER_GRPO.items():
        assert getattr(args, key) == value, key
        assert getattr(defaults, key) == value, key  # YAML and dataclass agree
    assert data.refer_seg_datasets == ["refcoco", "refcoco+", "refcocog"]
    assert args.ddp_find_unused_parameters is False


def test_stage1_yaml_holds_the_paper_values(tmp_path):
    _, _, args = parse_stage_args("stage1", [str(CONFIG / "train_stage1.yaml")],
                                  ["--output_dir", str(tmp_path), "--use_cpu", "true"])
    defaults = LensStage1Config(output_dir=str(tmp_path), use_cpu=True)
    for key, value in {"learning_rate": 3e-5, "lr_scheduler_type": "cosine",
                       "warmup_steps": 150, "per_device_train_batch_size": 32,
                       "gradient_accumulation_steps": 2, "num_train_epochs": 25}.items():
        got = getattr(args, key)
        got = got.value if hasattr(got, "value") else got
        want = getattr(defaults, key)
        assert got == value and (want.value if hasattr(want, "value") else want) == value, key
    assert args.activation_checkpointing is True  # as the reference; off in the CPU overlay


@pytest.mark.parametrize("cot", [False, True])
def test_reasonseg_yaml_overlays_hold_the_reference_runs(cot, tmp_path):
    files = [str(CONFIG / "train_grpo.yaml"), str(CONFIG / "train_grpo_reasonseg.yaml")]
    if cot:
        files.append(str(CONFIG / "train_grpo_reasonseg_cot.yaml"))
    _, data, args = parse_stage_args("grpo", files, ["--output_dir", str(tmp_path), "--use_cpu",
                                                     "true"])
    assert (args.learning_rate, args.per_device_train_batch_size,
            args.gradient_accumulation_steps, args.num_train_epochs) == (3e-6, 4, 4, 40)
    assert (args.num_generations, args.beta, args.temperature) == (8, 0.04, 0.9)
    assert data.refer_seg_root is None and data.reason_seg_dirs == [
        "datasets/reason_seg/ReasonSeg/train"]
    assert args.reasoning_prompt is cot
    assert args.rewards == (["box_iou", "think_format", "mask_iou"] if cot
                            else ["box_iou", "mask_iou"])
    assert args.vllm_importance_sampling_correction is False


@pytest.mark.parametrize("bad, match", [
    ({"rewards": ["nope"]}, "unknown or empty"),
    ({"policy_positions": "3d"}, "policy_positions"),
    ({"mask_loss_weight": -1.0}, "must be >= 0"),
    ({"rewards": ["box_iou"], "reward_weights": [1.0, 2.0]}, "one per reward"),
    ({"use_vllm": True}, "vllm_model_path"),
])
def test_grpo_config_refuses_bad_values(bad, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        LensGRPOConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


def test_bad_stage1_template_and_data_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="answer_template"):
        LensStage1Config(output_dir=str(tmp_path), use_cpu=True, answer_template="{nope}")
    with pytest.raises(ValueError, match="sample_per"):
        DataConfig(sample_per="image")


def test_unknown_yaml_field_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1.0\n")
    assert main(["grpo", "--config", str(bad)]) == 2
    assert "learning_rat" in capsys.readouterr().err


def test_cli_trains_resumes_plots_and_writes_a_loadable_model(tmp_path):
    out = tmp_path / "run"
    common = ["grpo", "--config", str(CONFIG / "train_grpo.yaml"), "--config",
              str(CONFIG / "train_grpo_cpu_tiny.yaml"), "--output_dir", str(out),
              "--save_steps", "1", "--toy_images", "2"]
    assert main(common + ["--max_steps", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 2 and summary["items"] == 4
    assert main(common + ["--max_steps", "3", "--resume", "true"]) == 0
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert steps == [1, 2, 3]  # the resumed run continued at step 3
    assert main(["plot", str(out)]) == 0
    for name in ("loss", "mask_loss", "kl", "rewards_box_iou_reward_mean",
                 "rewards_mask_iou_reward_mean", "overview"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    from lens_ros.model import LensSegmenter

    seg = LensSegmenter.from_pretrained(out / "final")
    seg.set_image(np.full((48, 64, 3), 128, np.uint8))
    result = seg.segment("red circle")
    assert result.mask.shape == (48, 64)


def test_plot_without_metrics_fails_cleanly(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_export_llm_gives_a_plain_qwen_model(tiny_model_dir, tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from lens_ros.model.build import load_model

    assert main(["export-llm", str(tiny_model_dir), str(tmp_path / "llm")]) == 0
    qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "llm").eval()
    lens = load_model(tiny_model_dir)
    ids = torch.tensor([[1, 20, 30, 40, 2]])
    with torch.no_grad():
        assert torch.allclose(qwen(input_ids=ids).logits, lens(input_ids=ids).logits)


def test_exported_llm_processor_is_transformers_own(tiny_model_dir, tmp_path):
    import importlib.util

    import transformers
    from transformers import AutoProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import processor_class_from_name

    from lens_ros.model.processing import ImageOnlyQwen2_5_VLProcessor

    out = tmp_path / "llm"
    assert main(["export-llm", str(tiny_model_dir), str(out)]) == 0
    cfg = json.loads((out / "processor_config.json").read_text())
    assert cfg["processor_class"] == "Qwen2_5_VLProcessor"
    assert processor_class_from_name(cfg["processor_class"]) is transformers.Qwen2_5_VLProcessor
    assert cfg["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("<|image_pad|>") == 12
    ours = ImageOnlyQwen2_5_VLProcessor.from_pretrained(out)
    assert ours.image_processor.merge_size == 2
    if importlib.util.find_spec("torchvision") is not None:  # as in a vLLM environment
        assert type(AutoProcessor.from_pretrained(out)) is transformers.Qwen2_5_VLProcessor
    else:  # the stock class was chosen; its video processor needs torchvision, as for hub folders
        with pytest.raises(ImportError, match="(?i)torchvision"):
            AutoProcessor.from_pretrained(out)


def test_distributed_config_files():
    two = yaml.safe_load((CONFIG / "accelerate_2proc_cpu.yaml").read_text())
    # MULTI_CPU or use_cpu would silently start one process (accelerate's simple launcher)
    assert two["distributed_type"] == "MULTI_GPU" and two["use_cpu"] is False
    assert two["num_processes"] == 2
    multi = yaml.safe_load((CONFIG / "accelerate_multigpu.yaml").read_text())
    assert multi["distributed_type"] == "MULTI_GPU" and multi["mixed_precision"] == "bf16"
    for stage in (2, 3):
        ds = json.loads((CONFIG / f"deepspeed_zero{stage}.json").read_text())
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["train_micro_batch_size_per_gpu"] == "auto"
        try:
            from deepspeed.runtime.config import DeepSpeedConfig
        except ImportError:
            continue  # optional (requirements/gpu.txt): JSON checked above
        concrete = {**ds, "train_batch_size": 8, "train_micro_batch_size_per_gpu": 8,
                    "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
                    "bf16": {"enabled": True}, "fp16": {"enabled": False}}
        DeepSpeedConfig(concrete)


def test_config_dataclasses_document_every_own_field():
    for cls, base in ((LensGRPOConfig, "GRPOConfig"), (LensStage1Config, "TrainingArguments"),
                      (DataConfig, None)):
        parents = {f.name for c in cls.__mro__[1:] if dataclasses.is_dataclass(c)
                   for f in dataclasses.fields(c)} if base else set()
        own = [f for f in dataclasses.fields(cls) if f.name not in parents]
        assert own and all(f.metadata.get("help") for f in own), cls.__name__
