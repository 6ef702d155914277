"""lens-train init: the LENS starting checkpoint from a Qwen2.5-VL folder (written with
save_pretrained) and a SAM 2 checkpoint in Meta's format (torch.save({"model": ...})), then
stage 1 and GRPO from it through the CLI."""
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import Qwen2_5_VLForConditionalGeneration

from lens_ros.core import CheckpointError
from lens_ros.model.build import load_checkpoint
from lens_ros.model.modeling import qwen_config
from lens_ros.model.presets import get_preset
from lens_ros.model.processing import build_processor
from lens_ros.model.sam import build_sam
from lens_ros.training.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """(qwen folder, sam2 .pt, the Qwen model, the full SAM2Base incl. memory modules)."""
    root = tmp_path_factory.mktemp("downloads")
    preset = get_preset("tiny")
    cfg = preset.config()
    torch.manual_seed(1)
    qwen = Qwen2_5_VLForConditionalGeneration(qwen_config(cfg)).eval()
    qwen.save_pretrained(root / "qwen")
    tok = preset.make_tokenizer()
    build_processor(tok, cfg.processing.min_pixels, cfg.processing.max_pixels).save_pretrained(
        root / "qwen")
    sam_cfg = cfg.sam
    sam_cfg.keep_memory_modules = True  # Meta's file holds the video model's memory modules
    sam = build_sam(sam_cfg)
    torch.save({"model": sam.state_dict()}, root / "sam2_tiny.pt")
    return root / "qwen", root / "sam2_tiny.pt", qwen, sam


def test_init_maps_every_key_and_initialises_the_head(downloads, tmp_path):
    qwen_dir, sam_pt, qwen, sam = downloads
    out = tmp_path / "lens_init"
    assert main(["init", "--qwen", str(qwen_dir), "--sam2", str(sam_pt), "--out", str(out),
                 "--preset", "tiny", "--dtype", "float32"]) == 0
    loaded = load_checkpoint(out)  # strict: any missing/unexpected key raises
    model = loaded.model
    lens_sd = model.state_dict()
    for k, v in qwen.state_dict().items():
        assert torch.equal(lens_sd[k], v), k
    sam_sd = sam.state_dict()
    memory = [k for k in sam_sd if k.split(".")[0] in ("maskmem_tpos_enc", "memory_attention",
                                                        "memory_encoder")]
    assert memory  # the file had them; LENS drops them
    for k, v in sam_sd.items():
        if k not in memory:
            assert torch.equal(lens_sd[f"sam.{k}"], v), k
    q = model.learnable_query
    assert abs(q.std().item() - 0.02) < 0.004 and abs(q.mean().item()) < 0.005
    assert torch.count_nonzero(model.conv_1d.bias) == 0
    assert torch.count_nonzero(model.connector.pos_embed) == 0
    assert torch.equal(model.connector.blocks[0].norm1.weight,
                       torch.ones_like(model.connector.blocks[0].norm1.weight))
    assert abs(model.proj_to_sam[0].weight.std().item() - 0.02) < 0.004
    assert loaded.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 12
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.self_attn.q_proj.weight" in keys  # released naming on disk
    assert not any(k.startswith("sam.memory_") for k in keys)


def test_init_refuses_a_sam_file_of_another_size_and_a_pickled_object(downloads, tmp_path):
    qwen_dir, _, _, _ = downloads
    other = get_preset("tiny").config().sam
    other.embed_dim = 24
    torch.save({"model": build_sam(other).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        from lens_ros.training.init_checkpoint import build_init_checkpoint

        build_init_checkpoint(qwen_dir, tmp_path / "other.pt", tmp_path / "x", preset="tiny")
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": Path("x")}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        build_init_checkpoint(qwen_dir, tmp_path / "obj.pt", tmp_path / "y", preset="tiny")


def test_init_then_stage1_then_grpo_through_the_cli(downloads, tmp_path):
    qwen_dir, sam_pt, _, _ = downloads
    init = tmp_path / "lens_init"
    assert main(["init", "--qwen", str(qwen_dir), "--sam2", str(sam_pt), "--out", str(init),
                 "--preset", "tiny", "--dtype", "float32"]) == 0
    s1 = tmp_path / "stage1"
    assert main(["stage1", "--config", str(CONFIG / "train_stage1.yaml"), "--config",
                 str(CONFIG / "train_stage1_cpu_tiny.yaml"), "--model_path", str(init),
                 "--output_dir", str(s1), "--max_steps", "2", "--toy_images", "2"]) == 0
    g = tmp_path / "grpo"
    assert main(["grpo", "--config", str(CONFIG / "train_grpo.yaml"), "--config",
                 str(CONFIG / "train_grpo_cpu_tiny.yaml"), "--model_path", str(s1 / "final"),
                 "--output_dir", str(g), "--max_steps", "2", "--toy_images", "2"]) == 0
    assert load_checkpoint(g / "final").model.num_queries == 64
