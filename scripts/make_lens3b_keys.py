"""Write test/data/lens3b_state_dict_keys.txt: the released LENS-3B checkpoint's parameter names.

The key list is checked without downloading the released weights: is reconstructed from the reference's
module definitions (hustvl/LENS at 28cf510), independently of
``lens_ros.model`` (no import of it):

1. Qwen part: the transformers-4.51 names of ``Qwen2_5_VLForConditionalGeneration`` written out
   from the 3B config (32 vision blocks, 36 decoder layers), exactly as section 4.2 lists them.
2. LENS head: ``learnable_query``, ``connector.*`` (pos_embed + 4 pre-LN blocks), ``conv_1d``,
   ``proj_to_sam.{0,2}`` from ``samr1.py:275-298`` / ``qwen2_vl.py:436-511``.
3. SAM 2: written out from the section-4.2 table (Hiera-L stages [2, 6, 36, 4], ``proj`` on the
   first block of stages 2-4, FPN neck, prompt encoder, mask decoder, object-pointer heads) AND,
   as an independent cross-check, the state dict of the ``sam2`` package's own
   ``build_sam2("sam2_hiera_l.yaml")`` (hydra config shipped in the package) with
   ``maskmem_tpos_enc``, ``memory_attention`` and ``memory_encoder`` deleted as LENS does. The
   script stops if the two disagree.

``lm_head.weight`` is listed: it is a key of the module's state dict; the safetensors file may
omit it because it is tied to ``model.embed_tokens.weight``.

    .venv/bin/python scripts/make_lens3b_keys.py [--no-sam2-check] [output.txt]
"""
from __future__ import annotations

import argparse
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "test" / "data" / "lens3b_state_dict_keys.txt"
WB = ("weight", "bias")


def _wb(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in WB]


def qwen_keys() -> list[str]:
    """transformers-4.51 names of Qwen2.5-VL-3B (visual.*, model.*, lm_head)."""
    keys = ["visual.patch_embed.proj.weight"]
    for i in range(32):
        b = f"visual.blocks.{i}"
        keys += [f"{b}.norm1.weight", f"{b}.norm2.weight"]
        keys += _wb(f"{b}.attn.qkv") + _wb(f"{b}.attn.proj")
        for p in ("gate_proj", "up_proj", "down_proj"):
            keys += _wb(f"{b}.mlp.{p}")
    keys += ["visual.merger.ln_q.weight"] + _wb("visual.merger.mlp.0") + _wb("visual.merger.mlp.2")
    keys.append("model.embed_tokens.weight")
    for i in range(36):
        b = f"model.layers.{i}"
        for p in ("q_proj", "k_proj", "v_proj"):
            keys += _wb(f"{b}.self_attn.{p}")
        keys.append(f"{b}.self_attn.o_proj.weight")
        keys += [f"{b}.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")]
        keys += [f"{b}.input_layernorm.weight", f"{b}.post_attention_layernorm.weight"]
    keys += ["model.norm.weight", "lm_head.weight"]
    return keys


def head_keys() -> list[str]:
    """learnable_query, connector, conv_1d, proj_to_sam."""
    keys = ["learnable_query", "connector.pos_embed"]
    for i in range(4):
        b = f"connector.blocks.{i}"
        for p in ("norm1", "norm2", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            keys += _wb(f"{b}.{p}")
    keys += _wb("conv_1d") + _wb("proj_to_sam.0") + _wb("proj_to_sam.2")
    return keys


def sam_keys_from_table() -> list[str]:
    """SAM 2 Hiera-L keys of LENS-3B (memory modules deleted)."""
    t = "sam.image_encoder.trunk"
    keys = [f"{t}.pos_embed", f"{t}.pos_embed_window"] + _wb(f"{t}.patch_embed.proj")
    for i in range(48):
        for p in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.layers.0", "mlp.layers.1"):
            keys += _wb(f"{t}.blocks.{i}.{p}")
        if i in (2, 8, 44):  # first block of stages 2, 3, 4 changes the width
            keys += _wb(f"{t}.blocks.{i}.proj")
    for i in range(4):
        keys += _wb(f"sam.image_encoder.neck.convs.{i}.conv")
    keys += ["sam.no_mem_embed", "sam.no_mem_pos_enc", "sam.no_obj_ptr"]
    keys += _wb("sam.mask_downsample")
    for i in range(3):
        keys += _wb(f"sam.obj_ptr_proj.layers.{i}")
    pe = "sam.sam_prompt_encoder"
    keys.append(f"{pe}.pe_layer.positional_encoding_gaussian_matrix")
    keys += [f"{pe}.point_embeddings.{i}.weight" for i in range(4)]
    keys += [f"{pe}.not_a_point_embed.weight", f"{pe}.no_mask_embed.weight"]
    for i in (0, 1, 3, 4, 6):
        keys += _wb(f"{pe}.mask_downscaling.{i}")
    md = "sam.sam_mask_decoder"
    for layer in range(2):
        b = f"{md}.transformer.layers.{layer}"
        for attn in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
                keys += _wb(f"{b}.{attn}.{p}")
        for n in range(1, 5):
            keys += _wb(f"{b}.norm{n}")
        keys += _wb(f"{b}.mlp.layers.0") + _wb(f"{b}.mlp.layers.1")
    for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
        keys += _wb(f"{md}.transformer.final_attn_token_to_image.{p}")
    keys += _wb(f"{md}.transformer.norm_final_attn")
    keys += [f"{md}.iou_token.weight", f"{md}.mask_tokens.weight", f"{md}.obj_score_token.weight"]
    for i in (0, 1, 3):
        keys += _wb(f"{md}.output_upscaling.{i}")
    keys += _wb(f"{md}.conv_s0") + _wb(f"{md}.conv_s1")
    for m in range(4):
        for i in range(3):
            keys += _wb(f"{md}.output_hypernetworks_mlps.{m}.layers.{i}")
    for head in ("iou_prediction_head", "pred_obj_score_head"):
        for i in range(3):
            keys += _wb(f"{md}.{head}.layers.{i}")
    return keys


def sam_keys_from_package() -> list[str]:
    """State-dict keys of sam2's own build_sam2("sam2_hiera_l.yaml") minus LENS' deletions.

    Built on the CPU with random weights (~1 GB, a few seconds); nothing is downloaded.
    """
    from sam2.build_sam import build_sam2

    sam = build_sam2("sam2_hiera_l.yaml", ckpt_path=None, device="cpu", mode="eval")
    for name in ("maskmem_tpos_enc", "memory_attention", "memory_encoder"):
        delattr(sam, name)
    return ["sam." + k for k in sam.state_dict()]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(OUT), help="file to write")
    parser.add_argument("--no-sam2-check", action="store_true",
                        help="skip the cross-check against the sam2 package's hydra build")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    sam = sam_keys_from_table()
    if not args.no_sam2_check:
        built = sam_keys_from_package()
        if set(built) != set(sam):
            print("SAM key lists disagree:")
            print("  only in the table:", sorted(set(sam) - set(built))[:20])
            print("  only in sam2's build:", sorted(set(built) - set(sam))[:20])
            return 1
        print(f"sam2 build_sam2('sam2_hiera_l.yaml') agrees: {len(built)} keys")
    keys = qwen_keys() + head_keys() + sam
    if len(set(keys)) != len(keys):
        print("duplicate keys in the reconstruction")
        return 1
    out = Path(args.output)
    out.write_text("\n".join(sorted(keys)) + "\n")
    print(f"wrote {len(keys)} keys to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
