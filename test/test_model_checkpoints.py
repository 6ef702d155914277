"""Checkpoints: released key names in the files, exact round trips, loud failures."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lens_ros.core import CheckpointError
from lens_ros.model import LensSegmenter
from lens_ros.model.checkpoints import config_from_json, save_checkpoint, weight_files
from lens_ros.model.build import load_model
from lens_ros.model.config import QWEN25_VL_3B_TEXT, LensConfig


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_files_use_the_released_names(tiny_model_dir):
    with safe_open(str(tiny_model_dir / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.up_proj.weight" in keys
    assert "model.embed_tokens.weight" in keys and "visual.patch_embed.proj.weight" in keys
    assert {"learnable_query", "conv_1d.weight", "proj_to_sam.0.weight",
            "connector.blocks.3.mlp.fc2.bias", "sam.no_mem_embed"} <= keys
    assert not any(k.startswith("model.language_model") or k.startswith("model.visual")
                   for k in keys)
    assert "lm_head.weight" not in keys  # tied to the embedding, as transformers saves it
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["num_of_query"] == 64 and config["if_use_qwen_connector"] is True


def _outputs(directory, image):
    seg = LensSegmenter.from_pretrained(directory, max_new_tokens=8)
    seg.set_image(image)
    return seg.segment("the red mug")


def test_save_then_load_gives_identical_outputs(tiny_model_dir, bundled_image, tmp_path):
    seg = LensSegmenter.from_pretrained(tiny_model_dir)
    seg.model.save_pretrained(tmp_path / "copy", processor=seg.processor, inference=seg.config)
    a = _outputs(tiny_model_dir, bundled_image)
    b = _outputs(tmp_path / "copy", bundled_image)
    assert a.answer == b.answer
    assert np.array_equal(a.mask, b.mask)
    assert a.score == b.score and a.object_score == b.object_score
    ref = seg.model.state_dict()
    for name, tensor in load_model(tmp_path / "copy").state_dict().items():
        assert torch.equal(tensor, ref[name]), name


def test_sharded_checkpoints_load(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    out = save_checkpoint(model, tmp_path / "sharded", max_shard_bytes=2_000_000)
    assert (out / "model.safetensors.index.json").is_file()
    assert len(weight_files(out)) > 2 and not (out / "model.safetensors").exists()
    again = load_model(out)
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.state_dict().items())


def test_missing_key_is_named(tiny_model_dir, tmp_path):
    broken = _copy(tiny_model_dir, tmp_path / "broken")
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["sam.sam_mask_decoder.iou_token.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing key\(s\) 'sam.sam_mask_decoder.iou_token"):
        load_model(broken)


def test_renamed_key_is_named(tiny_model_dir, tmp_path):
    broken = _copy(tiny_model_dir, tmp_path / "renamed")
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["conv1d.weight"] = tensors.pop("conv_1d.weight")
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        LensSegmenter.from_pretrained(broken)
    assert "'conv_1d.weight'" in str(err.value) and "'conv1d.weight'" in str(err.value)


def test_wrong_shape_is_named(tiny_model_dir, tmp_path):
    broken = _copy(tiny_model_dir, tmp_path / "shape")
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["learnable_query"] = torch.zeros(1, 32, 64)
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"'learnable_query' has shape \(1, 32, 64\)"):
        load_model(broken)


def test_released_lm_head_copy_is_accepted(tiny_model_dir, tmp_path):
    ckpt = _copy(tiny_model_dir, tmp_path / "with_head")
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, str(ckpt / "model.safetensors"))
    assert load_model(ckpt).lm_head.weight.shape == (512, 64)


@pytest.mark.parametrize("remove, message", [
    ("config.json", "config.json is missing"),
    ("model.safetensors", "model.safetensors"),
    ("tokenizer.json", "tokenizer.json is missing"),
])
def test_incomplete_directory_names_the_missing_file(tiny_model_dir, tmp_path, remove, message):
    broken = _copy(tiny_model_dir, tmp_path / "incomplete")
    (broken / remove).unlink()
    with pytest.raises(CheckpointError, match=message):
        LensSegmenter.from_pretrained(broken)


def test_nonexistent_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        LensSegmenter.from_pretrained(tmp_path / "nope")


def test_pickle_files_are_never_read(tiny_model_dir, tmp_path):
    ckpt = _copy(tiny_model_dir, tmp_path / "pickled")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="safetensors only"):
        load_model(ckpt)


def test_released_config_json_is_understood():
    # SAMR1Config(Qwen2VLConfig).to_json(): flat text keys, model_type qwen2_vl [inferred layout]
    released = dict(QWEN25_VL_3B_TEXT, model_type="qwen2_vl", num_of_query=64,
                    if_use_qwen_connector=True, image_token_id=151655, video_token_id=151656,
                    vision_start_token_id=151652, vision_end_token_id=151653,
                    tie_word_embeddings=True,
                    vision_config={"depth": 32, "hidden_size": 1280, "embed_dim": 1280,
                                   "in_chans": 3, "out_hidden_size": 2048,
                                   "fullatt_block_indexes": [7, 15, 23, 31]})
    assert config_from_json(released) == LensConfig()
    with pytest.raises(CheckpointError, match="model_type 'llama'"):
        config_from_json({"model_type": "llama"})
