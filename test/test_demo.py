"""The demo: word-level tokenizer and demo deviations (coordinate channels, box prompt), the
``lens-demo`` CLI, and the ``make demo`` pipeline (real lens_node + lens-bag play/record over DDS)
on a shortened synthetic bag, scored against its ground truth."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lens_ros.synthetic.scene import DEMO_IMAGE_SIZE

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "lens-demo"


@pytest.fixture(scope="module")
def demo_model_dir(tmp_path_factory):
    """The shipped model; a random-weight demo checkpoint when it is not there (fresh branch)."""
    if (SHIPPED / "config.json").is_file():
        return SHIPPED
    from lens_ros.model.presets import save_preset_checkpoint

    return save_preset_checkpoint("demo", tmp_path_factory.mktemp("demo_model"), seed=0)


def test_word_tokenizer_round_trips_answers_and_keeps_qwen_ids():
    from lens_ros.model.presets import LOCAL_TOKEN_IDS, get_preset
    from lens_ros.model.prompts import render_prompt

    tok = get_preset("demo").make_tokenizer()
    text = '<think>the large red cube</think><answer>{"bbox_2d": [0, 17, 56, 112]}</answer>'
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert len(ids) == 17  # one token per word, tag and coordinate
    for key, token in (("image_token_id", "<|image_pad|>"),
                       ("vision_start_token_id", "<|vision_start|>")):
        assert tok.convert_tokens_to_ids(token) == LOCAL_TOKEN_IDS[key]
    # the whole LENS prompt costs a handful of tokens; unknown words become <unk>
    prompt = tok(render_prompt("The RED zebra", True), add_special_tokens=False)["input_ids"]
    assert len(prompt) == 18
    assert tok.convert_ids_to_tokens(prompt).count("<unk>") == 1


def test_coordinate_channels_hold_each_pixels_position():
    from lens_ros.model.coords import add_coordinate_channels

    grid = torch.tensor([[1, 4, 6]])  # 56 x 84 px image, patch 14, merge 2
    px = torch.zeros(24, 3 * 2 * 14 * 14)
    out = add_coordinate_channels(px, grid, 14, 2, 2).reshape(24, 5, 2, 14, 14)
    # rebuild the image from patches in the processor's (h/m, w/m, m, m) order
    xs = torch.zeros(56, 84)
    ys = torch.zeros(56, 84)
    n = 0
    for bh in range(2):
        for bw in range(3):
            for mh in range(2):
                for mw in range(2):
                    r, c = (bh * 2 + mh) * 14, (bw * 2 + mw) * 14
                    xs[r:r + 14, c:c + 14] = out[n, 3, 0]
                    ys[r:r + 14, c:c + 14] = out[n, 4, 1]
                    n += 1
    expect_x = (torch.arange(84) + 0.5) / 84 * 2 - 1
    expect_y = (torch.arange(56) + 0.5) / 56 * 2 - 1
    assert torch.allclose(xs, expect_x.expand(56, 84))
    assert torch.allclose(ys, expect_y[:, None].expand(56, 84))


def test_answer_boxes_map_to_sam_pixels_and_default_to_whole_image():
    from lens_ros.model.coords import answer_boxes
    from lens_ros.model.presets import get_preset

    tok = get_preset("demo").make_tokenizer()
    ids = [tok('<answer>{"bbox_2d": [14, 28, 56, 112]}</answer>')["input_ids"],
           tok("<think>the ball</think>")["input_ids"]]
    boxes = answer_boxes(tok, ids, [(112, 112), (112, 112)], 128)
    assert boxes.tolist() == [[16.0, 32.0, 64.0, 128.0], [0.0, 0.0, 128.0, 128.0]]


@torch.no_grad()
def test_demo_decoder_keeps_its_trained_single_mask_output(demo_model_dir):
    """The demo recipe trains only SAM 2's single-mask output, so SAM 2's stability fallback to
    the multimask outputs (untrained) must stay off: in the preset and in the shipped settings."""
    from lens_ros.model.config import InferenceConfig
    from lens_ros.model.presets import build_lens

    model = build_lens("demo", seed=0)
    g = torch.Generator().manual_seed(0)
    feats = model.encode_sam_image(torch.randn(1, 3, 128, 128, generator=g))
    dim = model.sam.sam_prompt_encoder.embed_dim
    prompt = torch.randn(16, 1, dim, generator=g)
    default = model.decode_masks(prompt, feats).low_res_logits
    single = model.decode_masks(prompt, feats, multimask_fallback=False).low_res_logits
    fallback = model.decode_masks(prompt, feats, multimask_fallback=True).low_res_logits
    assert torch.equal(default, single)
    changed = [not torch.equal(a, b) for a, b in zip(fallback, single)]
    assert any(changed), "no unstable mask among the prompts: the check would not bite"
    saved = json.loads((demo_model_dir / "inference_config.json").read_text())
    assert InferenceConfig(**saved).stability_fallback is False


def test_lens_demo_prints_reasoning_and_writes_one_overlay(tmp_path, demo_model_dir, capsys):
    from PIL import Image

    from lens_ros.demo.cli import main

    img = REPO / "test" / "data" / "tabletop.png"
    out = tmp_path / "overlay.png"
    rc = main(["--image", str(img), "--command", "the red cube", "--model", str(demo_model_dir),
               "--out", str(out), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "reasoning:" in text and f"overlay:   {out}" in text
    assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(img).convert("RGB")).shape


def test_lens_demo_reports_an_unreadable_image(tmp_path, demo_model_dir, capsys):
    from lens_ros.demo.cli import main

    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    assert main(["--image", str(bad), "--command", "the cube", "--model",
                 str(demo_model_dir)]) == 2
    assert "cannot read image" in capsys.readouterr().err


@pytest.mark.ros
def test_demo_pipeline_answers_every_command_of_a_short_bag(tmp_path, demo_model_dir):
    bag = tmp_path / "bag"
    subprocess.run([sys.executable, "-m", "lens_ros.synthetic", "bag", "--out", str(bag),
                    "--split", "test", "--scenes", "2", "--expressions", "1", "--period", "1.5",
                    "--frames-per-scene", "2"],
                   check=True, capture_output=True, timeout=60)
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "lens_ros.demo.bag", "--model",
                          str(demo_model_dir), "--bag", str(bag), "--out", str(out),
                          "--timeout", "120"], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["commands"] == summary["answered"] == 2
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    gt = [json.loads(line) for line in (bag / "ground_truth.jsonl").read_text().splitlines()]
    assert [r["command"] for r in rows] == list(dict.fromkeys(g["command"] for g in gt))
    for r in rows:
        assert r["answered"] and r["status"] == "OK"
        assert (out / r["overlay"]).is_file()
        assert 0.0 <= r["mask_iou"] <= 1.0 and "answer" in r
    assert (out / "grid.png").is_file()
    assert "commands answered : 2/2" in run.stdout and str(out.resolve()) in run.stdout


@pytest.fixture(scope="module")
def tiny_pools(tmp_path_factory):
    """A normal and an easy scene pool of 8 scenes each."""
    from lens_ros.demo.pool import generate_pool, save_pool
    from lens_ros.synthetic import SceneConfig

    pools = tmp_path_factory.mktemp("pools")
    save_pool(generate_pool(8, SceneConfig(), progress=False), pools, "normal")
    save_pool(generate_pool(8, SceneConfig(min_objects=1, max_objects=3), 100, False), pools,
              "easy")
    return pools


def test_coordinate_tokens_weigh_more_in_the_answer_loss():
    from lens_ros.model.presets import get_preset
    from lens_ros.demo.sft import token_weights, weighted_ce

    tok = get_preset("demo").make_tokenizer()
    assert token_weights(tok, 1.0) is None
    w = token_weights(tok, 3.0)
    coord, word = tok.convert_tokens_to_ids("57"), tok.convert_tokens_to_ids(" cube")
    assert w[coord] == 3.0 and w[word] == 1.0
    logits = torch.zeros(1, 3, len(w))
    logits[0, 0, word] = 5.0  # the word is predicted well, the coordinate badly
    labels = torch.tensor([[word, coord, -100]])
    plain, weighted = weighted_ce(logits, labels, None), weighted_ce(logits, labels, w)
    per = torch.nn.functional.cross_entropy(logits[0, :2], labels[0, :2], reduction="none")
    assert plain == pytest.approx(float(per.mean()), rel=1e-5)
    assert weighted == pytest.approx(float((per[0] + 3 * per[1]) / 4), rel=1e-5)


def test_aux_targets_follow_the_token_grid(tiny_pools):
    from lens_ros.model.presets import build_lens, get_preset
    from lens_ros.demo.pool import load_pool
    from lens_ros.demo.samples import aux_targets, token_grid

    cfg = get_preset("demo").config()
    assert token_grid(build_lens(cfg)) == 4
    cfg.vision_config["patch_size"] = 7
    assert token_grid(build_lens(cfg)) == 8
    pool = load_pool(tiny_pools, "normal")
    t = aux_targets(pool, 0, 8)
    assert t["obj"].shape == (64,) and t["box"].shape == (64, 4)
    for _, box in pool.meta[0]["objects"]:  # each object's centre cell is marked (or shared)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        assert t["obj"][int(cy // 14) * 8 + int(cx // 14)] == 1.0


def test_listing_think_lists_every_object_and_holds_the_answer_box(tiny_pools, demo_model_dir):
    """The listing experiment's think names every object with its box, left to right; the
    answer box is one of the listed boxes; the word tokenizer encodes it without <unk>."""
    from transformers import AutoTokenizer

    from lens_ros.model.answers import find_boxes, parse_answer
    from lens_ros.demo.pool import load_pool
    from lens_ros.demo.samples import make_sample
    from lens_ros.configuration import config_from_files_and_flags as config_from_args
    from lens_ros.demo.sft import SFTConfig

    pool = load_pool(tiny_pools, "normal")
    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    scene = next(i for i in range(len(pool)) if len(pool.meta[i]["objects"]) >= 2)
    plain = make_sample(pool, scene, 0, False)
    listed = make_sample(pool, scene, 0, False, listing=True)
    think = parse_answer(listed.completion).reasoning
    assert think.endswith(". " + parse_answer(plain.completion).reasoning)
    listed_boxes = find_boxes(think.replace("[", '{"bbox_2d": [').replace("]", "]}"))
    assert listed_boxes == [tuple(b) for _, b in pool.meta[scene]["objects"]]
    assert tuple(listed.box) in listed_boxes and listed.box == plain.box
    ids = tok(listed.completion)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == listed.completion
    # the monitor credits a listing think only when the model writes one (the shipped one does not)
    from lens_ros.demo.evaluate import evaluate
    from lens_ros.demo.stage_loop import load_start

    model, processor, inference = load_start(str(demo_model_dir), "demo")
    ev, plain_ev = evaluate(model, processor, 2, listing=True), evaluate(model, processor, 2)
    assert ev["eval/list_names"] == 0.0 and ev["eval/think"] == 0.0
    assert ev["eval/acc"] == plain_ev["eval/acc"] and "eval/list_names" not in plain_ev
    # the monitor segments with the model's own inference defaults (here: no pixel passes)
    blind = evaluate(model, processor, 2, inference=inference.replace(mask_threshold=1e9))
    assert plain_ev["eval/mask_iou"] > 0 and blind["eval/mask_iou"] == 0.0
    assert blind["eval/acc"] == plain_ev["eval/acc"]
    assert config_from_args(SFTConfig, [], ["--listing", "true"]).listing is True
    assert config_from_args(SFTConfig, [], ["--listing", "no"]).listing is False
    with pytest.raises(SystemExit):
        config_from_args(SFTConfig, [], ["--listing", "maybe"])


def _same_weights(a, b) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.slow
def test_interrupted_and_resumed_run_trains_the_same_weights(tmp_path, tiny_pools):
    """The schedule follows steps (not the clock) and the resumable state holds the model, aux
    head, optimizer, RNGs and schedule position: 4 steps straight == 2 steps, stop, 2 more
    (with the recipe's two threads), and each step is logged once."""
    from lens_ros.demo.train import main as train

    args = ["sft", "--config", str(REPO / "config/demo/sft.yaml"), "--pool_dir",
            str(tiny_pools), "--steps", "4", "--warmup_steps", "1", "--eval_scenes", "1",
            "--eval_every_steps", "2", "--threads", "2", "--log_every", "1"]
    assert train(args + ["--output_dir", str(tmp_path / "a")]) == 0
    b = ["--output_dir", str(tmp_path / "b")]
    assert train(args + b + ["--stop_after_steps", "2"]) == 0
    assert (tmp_path / "b/resume.pt").is_file()
    assert train(args + b) == 0  # continues at step 2
    assert _same_weights(tmp_path / "a/last", tmp_path / "b/last")
    lines = [[json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
             for n in ("a", "b")]
    assert [r["step"] for r in lines[0] if "ce" in r] == [0, 1, 2, 3]
    assert [r["step"] for r in lines[1] if "ce" in r] == [0, 1, 2, 3]
    evals = [[r for r in rs if "eval/acc" in r] for rs in lines]
    assert [e["step"] for e in evals[0]] == [1, 3]  # every 2 steps (the last one is final)
    assert evals[0][-1]["eval/acc"] == evals[1][-1]["eval/acc"]
    assert train(args + b) == 0  # a finished run: nothing to do, nothing changes
    assert _same_weights(tmp_path / "a/last", tmp_path / "b/last")
    assert train(args + b + ["--lr", "0.5"]) == 2  # other settings: refused, not mixed


def test_recipe_stages_run_and_export_a_loadable_fp16_model(tmp_path, tiny_pools):
    """demo.train sft -> demo.train mask -> fp16 export, a few steps each on a tiny pool."""
    from lens_ros.model import LensSegmenter
    from lens_ros.demo.train import main as train
    from lens_ros.demo.export import export

    pools = tiny_pools
    common = ["--pool_dir", str(pools), "--eval_scenes", "2", "--eval_every_minutes", "100"]
    assert train(["sft", "--config", str(REPO / "config/demo/sft.yaml"), "--output_dir",
                  str(tmp_path / "sft"), "--steps", "3", "--warmup_steps", "1"] + common) == 0
    metrics = [json.loads(x) for x in (tmp_path / "sft/metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == 0 and metrics[0]["ce"] > 0 and metrics[0]["aux"] > 0
    assert any("eval/acc" in m for m in metrics)
    mask = ["mask", "--config", str(REPO / "config/demo/mask.yaml"), "--init",
            str(tmp_path / "sft/best"), "--steps", "2", "--warmup_steps", "1"] + common
    assert train(mask + ["--output_dir", str(tmp_path / "mask")]) == 0
    # the mask stage resumes too (box jitter draws from torch's RNG): 1 + 1 steps == 2 steps
    assert train(mask + ["--output_dir", str(tmp_path / "m2"), "--stop_after_steps", "1"]) == 0
    assert train(mask + ["--output_dir", str(tmp_path / "m2")]) == 0
    assert _same_weights(tmp_path / "mask/last", tmp_path / "m2/last")
    out = export(tmp_path / "mask/best", tmp_path / "ship", {"seed": 0})
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    assert size < 30e6 and json.loads((out / "training.json").read_text()) == {"seed": 0}
    seg = LensSegmenter.from_pretrained(out, device="cpu")
    assert seg.config.reasoning and seg.model.lens_config.box_prompt
    side = DEMO_IMAGE_SIZE
    seg.set_image(np.zeros((side, side, 3), np.uint8))
    assert seg.segment("the red cube").mask.shape == (side, side)


def test_error_split_separates_resolution_from_localisation():
    from lens_ros.demo.errors import CASES, classify, named_target, table

    assert named_target("the small red mug is the anchor and the only cup left of it is the "
                        "large blue cup") == "large blue cup"
    assert named_target("no name here") == ""
    refs = {i: {"reasoning": "only one red object is here and it is the small red cube"}
            for i in range(4)}
    said = ["only one red object is here and it is the small red cube",
            "only one red object is here and it is the large red ball"]
    records = [{"ref_id": i, "level": "attribute", "reasoning": said[i // 2],
                "box_iou": (0.9, 0.1)[i % 2]} for i in range(4)]
    counts = classify(records, refs)
    assert [counts[("all", c)] for c in CASES] == [1, 1, 1, 1]
    assert "| attribute | 4 | 0.25 | 0.25 | 0.25 | 0.25 | 0.50 |" in table(counts)


def test_cell_split_finds_targets_that_lose_their_visual_token():
    from lens_ros.demo.errors import CELLS, cell_table, token_cells

    # 112 px image, 4 x 4 raster of 28 px cells; bbox = x, y, w, h
    instances = {"images": [{"id": 1, "width": 112, "height": 112}],
                 "annotations": [
                     {"id": 1, "image_id": 1, "bbox": [0, 0, 20, 20]},      # cell (0, 0), larger
                     {"id": 2, "image_id": 1, "bbox": [10, 10, 8, 8]},      # cell (0, 0), smaller
                     {"id": 3, "image_id": 1, "bbox": [80, 80, 20, 20]},    # cell (3, 3), alone
                     {"id": 4, "image_id": 1, "bbox": [100, 100, 12, 12]}]}  # centre 106: (3, 3)
    cells = token_cells(instances, grid=4)
    assert cells == {1: CELLS[1], 2: CELLS[2], 3: CELLS[1], 4: CELLS[2]}
    instances["annotations"] = instances["annotations"][:3]
    cells = token_cells(instances, grid=4)
    assert cells[3] == CELLS[0]
    assert token_cells(instances, grid=8)[2] == CELLS[0]  # a finer raster separates 1 and 2
    refs = {0: {"ann_id": 2}, 1: {"ann_id": 3}, 2: {"ann_id": 3}}
    records = [{"ref_id": 0, "level": "attribute", "box_iou": 0.9},
               {"ref_id": 1, "level": "spatial", "box_iou": 0.7},
               {"ref_id": 2, "level": "spatial", "box_iou": 0.2}]
    text = cell_table(records, refs, cells)
    assert "| overall | 2, 0.50 | 0, – | 1, 1.00 |" in text
    assert "| attribute | 0, – | 0, – | 1, 1.00 |" in text
    assert "| spatial | 2, 0.50 | 0, – | 0, – |" in text


def test_linear_probe_reads_an_encoded_attribute_and_not_noise():
    from lens_ros.demo.probe import linear_probe_accuracy

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=g)
    x = torch.randn(600, 16, generator=g)
    x[:, 5] += 4.0 * y  # the class is written along one feature
    _, acc = linear_probe_accuracy(x[:400], y[:400], x[400:], y[400:], 3)
    assert acc > 0.95
    _, chance = linear_probe_accuracy(x[:400, 6:], y[:400], x[400:, 6:], y[400:], 3)
    assert chance < 0.55  # the other features carry nothing: near 1/3


def test_listing_is_scored_object_by_object_at_its_rank():
    from lens_ros.demo.probe import score_listing

    objects = [("small red cube", (10, 10, 30, 30)), ("large blue ball", (50, 40, 90, 80))]
    right = ('<think>the small red cube and the large blue ball</think><answer>'
             '{"bbox_2d": [10, 11, 30, 30]}, {"bbox_2d": [50, 40, 90, 80]}</answer>')
    assert score_listing(right, objects) == {"names": 2, "boxes": 2, "named": 2, "n": 2,
                                             "exact": 1.0}
    swapped = ('<think>the large blue ball and the small red cube</think><answer>'
               '{"bbox_2d": [50, 40, 90, 80]}</answer>')
    assert score_listing(swapped, objects) == {"names": 0, "boxes": 0, "named": 2, "n": 2,
                                               "exact": 0.0}
    twice = '<think>the small red cube and the small red cube</think><answer></answer>'
    assert score_listing(twice, objects)["named"] == 1
    assert score_listing("garbage", objects)["n"] == 2


def test_listing_grounding_separates_reading_resolving_and_copying():
    from lens_ros.demo.probe import score_listing_grounding
    from lens_ros.demo.samples import listing_text, parse_listing

    objects = [("large red cube", [10, 10, 30, 30]), ("small blue ball", [50, 50, 62, 62])]
    assert parse_listing(listing_text(objects) + ". it is the small blue ball") == objects
    # the list misreads the ball's shape, the resolution names the cube, the answer is a copy
    think = ("the large red cube [10, 10, 30, 30] and the small blue cone [50, 50, 62, 62]. "
             "there are two objects and it is the large red cube")
    s = score_listing_grounding(think, (10, 10, 30, 30), objects, "small blue ball")
    assert (s["names"], s["boxes"], s["boxed"]) == (1, 2, 2)
    assert (s["size"], s["colour"], s["shape"]) == (2, 2, 1)
    assert (s["named"], s["hit"], s["copied"], s["copy_hit"]) == (0, 0, 1, 0)
    # the right object named, but the answer box is not taken from the list (and misses)
    think = listing_text(objects) + ". only one ball is here and it is the small blue ball"
    s = score_listing_grounding(think, (0, 0, 8, 8), objects, "small blue ball")
    assert (s["named"], s["hit"], s["copied"], s["copy_hit"]) == (1, 0, 0, 1)


def test_probe_command_reports_tokens_and_listing(demo_model_dir, tiny_pools, capsys):
    from lens_ros.demo.probe import main

    assert main([str(demo_model_dir), "--pool-dir", str(tiny_pools), "--train", "5",
                 "--test", "3", "--list-scenes", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| colour |" in out and "list the objects (2 val scenes" in out
    assert main([str(demo_model_dir), "--pool-dir", str(tiny_pools), "--train", "8",
                 "--test", "3", "--threads", "1"]) == 2


@pytest.mark.parametrize("overlay", ["sft_listing.yaml", "sft_more.yaml"])
def test_experiment_overlays_parse_over_the_recipe_config(overlay):
    """The documented experiment configs layer over sft.yaml without unknown keys and change
    what they say they change."""
    from lens_ros.configuration import config_from_files_and_flags as config_from_args
    from lens_ros.demo.sft import SFTConfig

    base = config_from_args(SFTConfig, [str(REPO / "config/demo/sft.yaml")], [])
    cfg = config_from_args(SFTConfig, [str(REPO / "config/demo/sft.yaml"),
                                       str(REPO / "config/demo" / overlay)], [])
    assert cfg.output_dir != base.output_dir  # never overwrites the recipe's run
    if overlay == "sft_more.yaml":
        assert cfg.init == "runs/demo/sft/last" and cfg.easy_fraction == 0.0
        assert cfg.lr < base.lr and cfg.seed == base.seed
    else:
        assert cfg.listing and not base.listing


def test_a_stage_asked_for_cuda_without_one_names_the_fix(monkeypatch):
    from lens_ros.demo.stage_loop import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
