"""Demo deviations from LENS, both config switches (off in ``lens-3b``):

* ``coord_channels``: CoordConv-like input for the Qwen2.5-VL vision tower. The stock tower has
  only rotary (relative) positions, so a from-scratch model cannot read absolute positions off
  its visual tokens; two extra input channels holding each pixel's x and y in [-1, 1] fix that
  while keeping the stock classes (only ``vision_config.in_channels`` = 5 changes).
* ``box_prompt``: the answer's box as SAM 2's two box-corner tokens beside the query prompt.
"""
from __future__ import annotations

import torch


def add_coordinate_channels(pixel_values: torch.Tensor, grid_thw: torch.Tensor,
                            patch_size: int, temporal_patch_size: int,
                            merge_size: int) -> torch.Tensor:
    """Append x/y coordinate channels to Qwen2-VL processor patches.

    Arguments:
      pixel_values (torch.Tensor): (N, 3*T*P*P) patches in the processor's order: per image,
        patches ordered (t, h/m, w/m, m, m); within a patch (channel, temporal, py, px).
      grid_thw (torch.Tensor): (num_images, 3) int patch grids (t, h, w).
    Returns:
      (N, 5*T*P*P) with channels (R, G, B, x, y); x = (col + 0.5) / W * 2 - 1 over the image.
    """
    p, t, m = patch_size, temporal_patch_size, merge_size
    n = pixel_values.shape[0]
    dev, dtype = pixel_values.device, pixel_values.dtype
    xs, ys = [], []
    for gt, gh, gw in grid_thw.tolist():
        rows = torch.arange(gh, device=dev).view(gh // m, 1, m, 1).expand(gh // m, gw // m, m, m)
        cols = torch.arange(gw, device=dev).view(1, gw // m, 1, m).expand(gh // m, gw // m, m, m)
        rows, cols = rows.reshape(-1).repeat(gt), cols.reshape(-1).repeat(gt)
        off = torch.arange(p, device=dev)
        ys.append(((rows[:, None] * p + off + 0.5) / (gh * p)) * 2 - 1)
        xs.append(((cols[:, None] * p + off + 0.5) / (gw * p)) * 2 - 1)
    y, x = torch.cat(ys).to(dtype), torch.cat(xs).to(dtype)  # (N, P)
    xch = x[:, None, None, :].expand(n, t, p, p)
    ych = y[:, None, :, None].expand(n, t, p, p)
    rgb = pixel_values.reshape(n, 3, t, p, p)
    return torch.cat([rgb, xch[:, None], ych[:, None]], dim=1).reshape(n, -1)


def coordinate_hook(module, args, kwargs):
    """Forward pre-hook for the vision tower: adds the coordinate channels to 3-channel input."""
    cfg = module.config
    pixels = args[0] if args else kwargs["hidden_states"]
    grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
    per_channel = cfg.temporal_patch_size * cfg.patch_size ** 2
    if pixels.shape[-1] != 3 * per_channel:
        return None  # already has the coordinate channels
    pixels = add_coordinate_channels(pixels, grid, cfg.patch_size, cfg.temporal_patch_size,
                                     cfg.spatial_merge_size)
    if args:
        return (pixels,) + tuple(args[1:]), kwargs
    return args, {**kwargs, "hidden_states": pixels}


def box_corner_prompt(prompt_encoder, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2 prompts from answer boxes: the two box-corner tokens, and the box rectangle as
    SAM's dense mask prompt (logit +4 inside, -4 outside, at the mask-input resolution) so that
    the decoder refines a spatial prior instead of learning to read corners from scratch.

    Arguments:
      boxes (torch.Tensor): (B, 4) xyxy in SAM input pixels.
    Returns:
      (sparse (B, 2, C), dense (B, C, h, w)) for the mask decoder.
    """
    side = prompt_encoder.mask_input_size[0]
    scale = side / prompt_encoder.input_image_size[0]
    c = (torch.arange(side, device=boxes.device, dtype=boxes.dtype) + 0.5) / scale
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))
    inside_x = (c[None] >= x1) & (c[None] < x2)
    inside_y = (c[None] >= y1) & (c[None] < y2)
    rect = (inside_y[:, :, None] & inside_x[:, None, :]).to(boxes.dtype) * 8.0 - 4.0
    return prompt_encoder(points=None, boxes=boxes, masks=rect[:, None])


def answer_boxes(tokenizer, completion_ids, llm_hw: list[tuple[int, int]],
                 sam_size: int) -> torch.Tensor:
    """The answer box of each completion in SAM input pixels, for ``box_prompt`` models.

    Arguments:
      tokenizer: decodes the ids (special tokens, e.g. padding, are skipped).
      completion_ids: (B, L) tensor or B id lists, generated ids only.
      llm_hw (list[tuple[int, int]]): per row, (H', W') of the LLM image the box refers to.
      sam_size (int): SAM input side S.
    Returns:
      (B, 4) float32 xyxy; a completion without a box gets the whole image (0, 0, S, S).
    """
    from lens_ros.model.answers import parse_answer, rescale_box

    out = []
    for ids, hw in zip(completion_ids, llm_hw):
        box = parse_answer(tokenizer.decode(ids, skip_special_tokens=True)).box
        out.append(rescale_box(box, hw, (sam_size, sam_size)) if box is not None
                   else (0.0, 0.0, float(sam_size), float(sam_size)))
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)


def grid_hw(grid_thw: torch.Tensor, patch_size: int) -> list[tuple[int, int]]:
    """(H', W') pixels of each image of a (num_images, 3) patch grid."""
    return [(int(h) * patch_size, int(w) * patch_size) for _, h, w in grid_thw.tolist()]
