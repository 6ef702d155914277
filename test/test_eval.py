"""lens-eval on a tiny RefCOCO-format fixture generated here (images, refs pickle, instances.json)
with the random-weight ``tiny`` model: table, JSONL and PNGs are written, and a re-run after
deleting half of the records recomputes exactly the refs that lost a record."""
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from lens_ros.evaluation import cli as eval_cli
from lens_ros.evaluation.evaluator import read_records
from lens_ros.data.masks import encode_rle
from lens_ros.evaluation.refcoco import load_split, parse_split
from lens_ros.evaluation.reports import PAPER_LENS_3B, build_report, markdown
from lens_ros.data.safe_pickle import UnsafePickleError

H, W = 120, 160  # small frames: the tiny model's cost stays ~40 ms per ref


def _rect_poly(x1, y1, x2, y2):
    return [[float(v) for v in (x1, y1, x2, y1, x2, y2, x1, y2)]]


def write_refcoco_fixture(root: Path) -> dict:
    """ROOT/refcoco/{refs(unc).p, instances.json} + ROOT/images/mscoco/images/train2014/*.jpg.

    3 images with coloured rectangles; val has 4 refs (7 sentences: one empty, one on a missing
    image), testA has 1 ref. Returns counts for the assertions.
    """
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    img_dir.mkdir(parents=True)
    images, anns, refs = [], [], []
    colors = [(220, 30, 30), (30, 200, 30), (30, 30, 220)]
    for image_id in (1, 2, 3):
        rgb = np.full((H, W, 3), 90, np.uint8)
        for k, c in enumerate(colors):
            x = 10 + 50 * k
            rgb[30 + 10 * image_id:80, x:x + 40] = c
        name = f"COCO_train2014_{image_id:012d}.jpg"
        if image_id != 3:  # image 3 is listed but missing on disk
            cv2.imwrite(str(img_dir / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append({"id": image_id, "file_name": name, "height": H, "width": W})
        for k in range(3):
            x, y = 10 + 50 * k, 30 + 10 * image_id
            seg = _rect_poly(x, y, x + 40, 80)
            if image_id == 2 and k == 1:  # one annotation as a compressed RLE dict
                m = np.zeros((H, W), bool)
                m[y:80, x:x + 40] = True
                seg = encode_rle(m)
            anns.append({"id": image_id * 10 + k, "image_id": image_id, "category_id": 1,
                         "bbox": [x, y, 40, 80 - y], "segmentation": seg, "iscrowd": 0})
    names = ["red box", "green box", "blue box"]

    def ref(ref_id, image_id, k, split, sents):
        refs.append({"ref_id": ref_id, "ann_id": image_id * 10 + k, "image_id": image_id,
                     "split": split, "category_id": 1, "file_name": f"x_{ref_id}.jpg",
                     "sent_ids": list(range(len(sents))),
                     "sentences": [{"sent": s, "raw": s, "sent_id": 100 * ref_id + i,
                                    "tokens": s.split()} for i, s in enumerate(sents)]})

    ref(0, 1, 0, "val", [names[0], "the left one"])
    ref(1, 1, 2, "val", [names[2]])
    ref(2, 2, 1, "val", [names[1], ""])  # an empty sentence: BAD_COMMAND, siblings still run
    ref(3, 3, 0, "val", [names[0], "leftmost"])  # missing image: BAD_IMAGE records
    ref(4, 2, 0, "testA", [names[0]])
    ref(5, 1, 1, "train", [names[1]])
    (root / "refcoco").mkdir()
    with open(root / "refcoco" / "refs(unc).p", "wb") as fh:
        pickle.dump(refs, fh, protocol=2)
    (root / "refcoco" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}]}))
    return {"val_refs": 4, "val_sentences": 7, "testA_sentences": 1}


@pytest.fixture
def refcoco_root(tmp_path):
    root = tmp_path / "refer_seg"
    counts = write_refcoco_fixture(root)
    return root, counts


def test_load_split_reads_refs_boxes_and_masks(refcoco_root):
    root, counts = refcoco_root
    samples = load_split(root, "refcoco/val")
    assert len(samples) == counts["val_refs"]
    s = samples[0]
    assert (s.ref_id, s.sentences, s.gt_box) == (0, ["red box", "the left one"], (10, 40, 50, 80))
    gt = s.gt_mask()
    assert gt.shape == (H, W) and gt.max() == 1
    assert load_split(root, "refcoco.unc.testA")[0].ref_id == 4
    rle_sample = samples[2]
    assert rle_sample.gt_mask().sum() == 40 * (80 - 50)
    with pytest.raises(FileNotFoundError, match="known splits"):
        load_split(root, "refcoco/testB")
    with pytest.raises(ValueError, match="DATASET"):
        parse_split("refcoco")


def test_malicious_refs_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "refcoco").mkdir()
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as fh:
        pickle.dump([Evil()], fh)
    with pytest.raises(UnsafePickleError):
        load_split(tmp_path, "refcoco/val")


class CountingSegmenter:
    """The real segmenter, counting ``segment_batch`` calls (one per computed ref)."""

    def __init__(self, inner):
        self.inner, self.batches = inner, 0

    @property
    def config(self):
        return self.inner.config

    @property
    def model(self):
        return self.inner.model

    def set_image(self, rgb):
        self.inner.set_image(rgb)

    def segment(self, *a, **kw):
        return self.inner.segment(*a, **kw)

    def segment_batch(self, commands, reasoning=None):
        self.batches += 1
        return self.inner.segment_batch(commands, reasoning=reasoning)


def test_lens_eval_writes_report_and_resumes_only_missing_records(refcoco_root, tmp_path,
                                                                  tiny_model_dir, monkeypatch):
    root, counts = refcoco_root
    out = tmp_path / "eval"
    loaded, inner = [], []

    def load(model, device=None, dtype=None, **overrides):
        from lens_ros.model import LensSegmenter

        if not inner:  # one load serves both runs
            inner.append(LensSegmenter.from_pretrained(model, **overrides))
        loaded.append(CountingSegmenter(inner[0]))
        return loaded[-1]

    monkeypatch.setattr(eval_cli, "load_segmenter", load)
    argv = ["--model", str(tiny_model_dir), "--data-root", str(root), "--splits", "refcoco/val",
            "refcoco.unc.testA", "-o", str(out), "--max-new-tokens", "8", "--overlays", "2",
            "--no-progress"]
    assert eval_cli.main(argv) == 0
    first = loaded[-1]
    assert first.batches == 3 + 1  # the 3 val refs with a readable image + 1 testA ref

    val_path = out / "records" / "refcoco_unc_val.jsonl"
    recs = read_records(val_path)
    assert len(recs) == counts["val_sentences"]
    by_key = {(r["ref_id"], r["sent_index"]): r for r in recs}
    assert by_key[(2, 1)]["status"] == "BAD_COMMAND" and by_key[(2, 0)]["status"] == "OK"
    assert {by_key[(3, i)]["status"] for i in (0, 1)} == {"BAD_IMAGE"}
    assert by_key[(3, 0)]["intersection"] == 0 and by_key[(3, 0)]["union"] > 0
    assert all(r["pred_rle"]["size"] == [H, W] for r in recs)

    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    val = report["splits"]["refcoco.unc.val"]
    assert val["n"] == counts["val_sentences"] and val["refs"] == counts["val_refs"]
    assert val["ciou"] == pytest.approx(sum(r["intersection"] for r in recs)
                                        / sum(r["union"] for r in recs))
    paper_row = ("| LENS-3B (paper) | 84.2 | 85.3 | 81.0 | 79.4 | 82.8 | 74.3 | 81.2 | 81.0 "
                 "| 81.2 |")
    assert paper_row in md
    ours = next(line for line in md.splitlines() if "(ours)" in line)
    assert ours.count("–") == 6 and "(2/8)" in ours  # val + testA evaluated
    pngs = sorted(p.name for p in (out / "overlays" / "refcoco_unc_val").glob("*.png"))
    assert [p[:5] for p in pngs].count("worst") == 2 and [p[:4] for p in pngs].count("best") == 2

    # delete every other record and leave a torn line (as a kill mid-write would), then re-run
    kept = recs[::2]
    val_path.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"torn": ')
    lost_refs = {r["ref_id"] for r in recs[1::2]}
    readable_lost = lost_refs - {3}  # ref 3's image is missing: no model call, only a record
    assert eval_cli.main(argv) == 0
    second = loaded[-1]
    assert second.batches == len(readable_lost)
    again = read_records(val_path)
    assert len(again) == counts["val_sentences"]
    kept_times = {(r["ref_id"], r["sent_index"]): r["time"] for r in kept}
    for r in again:
        if (r["ref_id"], r["sent_index"]) in kept_times:
            assert r["time"] == kept_times[(r["ref_id"], r["sent_index"])]
    report2 = json.loads((out / "report.json").read_text())
    assert report2["splits"] == report["splits"]  # same batches, same predictions, same metrics


def test_report_layout_and_levels():
    def rec(ref_id, i, u, level, box_iou=0.6):
        return {"ref_id": ref_id, "sent_index": 0, "intersection": i, "union": u,
                "box_iou": box_iou, "status": "OK", "truncated": False, "level": level}

    records = {"synthetic.seed.test": [rec(0, 5, 10, "attribute"), rec(1, 0, 0, "spatial"),
                                       rec(2, 3, 4, "spatial", 0.2)]}
    report = build_report(records, "demo")
    assert report["splits"]["synthetic.seed.test"]["ciou"] == 8 / 14
    levels = report["levels"]["synthetic.seed.test"]
    assert levels["spatial"]["giou"] == pytest.approx((1.0 + 0.75) / 2)
    assert levels["attribute"]["n"] == 1
    md = markdown(report)
    assert "## synthetic.seed.test by level" in md and "| spatial | 2 | 2 |" in md
    assert report["avg_ciou_x100"] is None and PAPER_LENS_3B["refcocog.umd.test"] == 81.0


def test_eval_yaml_matches_config_defaults():
    """config/eval_refcoco.yaml holds exactly the EvalConfig fields with their defaults."""
    import dataclasses

    import yaml

    path = Path(__file__).resolve().parents[1] / "config" / "eval_refcoco.yaml"
    values = yaml.safe_load(path.read_text())
    defaults = {f.name: getattr(eval_cli.EvalConfig(), f.name)
                for f in dataclasses.fields(eval_cli.EvalConfig)}
    assert values == defaults
    args = eval_cli.make_parser().parse_args(["--config", str(path), "--model", "m",
                                              "--data-root", "d", "--max-refs", "3"])
    cfg = eval_cli.config_from_args(args)
    assert (cfg.model, cfg.max_refs, cfg.split_names()[0]) == ("m", 3, "refcoco.unc.val")
    assert len(cfg.split_names()) == 8


def _tiny_loader(monkeypatch):
    """Patch lens-eval's loader to reuse one tiny segmenter per (model, overrides)."""
    from lens_ros.model import LensSegmenter

    cache = {}

    def load(model, device=None, dtype=None, **overrides):
        key = (str(model), tuple(sorted((k, v) for k, v in overrides.items() if v is not None)))
        if key not in cache:
            cache[key] = LensSegmenter.from_pretrained(model, **dict(key[1]))
        return cache[key]

    monkeypatch.setattr(eval_cli, "load_segmenter", load)


def _resave_images(root: Path, orientation: int | None) -> None:
    """Re-encode every fixture JPEG with PIL (same encoder settings for both variants), with an
    EXIF Orientation tag when given: the stored pixels are identical either way."""
    from PIL import Image

    for path in (root / "images" / "mscoco" / "images" / "train2014").glob("*.jpg"):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        img = Image.fromarray(rgb)
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        img.save(path, quality=95, exif=exif.tobytes())


def test_exif_orientation_changes_neither_pixels_nor_scores(tmp_path, tiny_model_dir,
                                                            monkeypatch):
    from PIL import Image

    from lens_ros.data.sources import read_rgb

    roots = {}
    for name, orientation in (("plain", None), ("rotated_tag", 6)):
        roots[name] = tmp_path / name
        write_refcoco_fixture(roots[name])
        _resave_images(roots[name], orientation)
    img = "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg"
    assert Image.open(roots["rotated_tag"] / img).getexif()[0x0112] == 6
    tagged_cv2 = cv2.imread(str(roots["rotated_tag"] / img), cv2.IMREAD_COLOR)
    assert tagged_cv2.shape[:2] == (W, H)  # what a plain IMREAD_COLOR reader would score on
    assert np.array_equal(read_rgb(roots["plain"] / img), read_rgb(roots["rotated_tag"] / img))
    assert read_rgb(roots["rotated_tag"] / img).shape == (H, W, 3)
    _tiny_loader(monkeypatch)
    reports = {}
    for name, root in roots.items():
        out = tmp_path / f"eval_{name}"
        assert eval_cli.main(["--model", str(tiny_model_dir), "--data-root", str(root),
                              "--splits", "refcoco/val", "-o", str(out), "--max-new-tokens", "8",
                              "--overlays", "0", "--no-progress"]) == 0
        reports[name] = json.loads((out / "report.json").read_text())["splits"]
        recs = read_records(out / "records" / "refcoco_unc_val.jsonl")
        assert not [r for r in recs if r["status"] == "MODEL_ERROR"]
    assert reports["plain"] == reports["rotated_tag"]


def test_a_prediction_of_the_wrong_size_is_an_error_record():
    from lens_ros.core import Segmentation, Status
    from lens_ros.evaluation.evaluator import sentence_record
    from lens_ros.evaluation.refcoco import RefSample

    sample = RefSample(ref_id=7, ann_id=1, image_id=1, sentences=["red box"], sent_ids=[0],
                       image_path=Path("x.jpg"), height=H, width=W, gt_box=(0, 0, 10, 10),
                       segmentation=[])
    gt = np.ones((H, W), bool)
    rotated = Segmentation(command="red box", mask=np.ones((W, H), bool), status=Status.OK)
    rec = sentence_record("refcoco.unc.val", sample, 0, rotated, gt, 1.0)
    assert rec["status"] == "MODEL_ERROR" and f"{W}x{H}" in rec["error"]
    assert rec["intersection"] == 0 and rec["union"] == H * W
    right = Segmentation(command="red box", mask=np.ones((H, W), bool), status=Status.OK)
    assert sentence_record("refcoco.unc.val", sample, 0, right, gt, 1.0)["status"] == "OK"


def test_resuming_over_another_models_records_is_refused(refcoco_root, tmp_path, tiny_model_dir,
                                                         monkeypatch, capsys):
    from lens_ros.evaluation.fingerprint import model_fingerprint

    root, _ = refcoco_root
    _tiny_loader(monkeypatch)
    out = tmp_path / "eval"
    argv = ["--model", str(tiny_model_dir), "--data-root", str(root), "--splits", "refcoco/val",
            "-o", str(out), "--overlays", "0", "--no-progress", "--max-refs", "1"]
    assert eval_cli.main(argv + ["--max-new-tokens", "8"]) == 0
    recs = read_records(out / "records" / "refcoco_unc_val.jsonl")
    assert recs and len({r["model_id"] for r in recs}) == 1
    assert recs[0]["checkpoint"] == str(tiny_model_dir.resolve())
    capsys.readouterr()
    # other inference settings = another model's predictions: refused, records untouched
    assert eval_cli.main(argv + ["--max-new-tokens", "9"]) == 2
    err = capsys.readouterr().err
    assert "another model" in err and "new --output" in err
    assert read_records(out / "records" / "refcoco_unc_val.jsonl") == recs
    assert eval_cli.main(argv + ["--max-new-tokens", "8"]) == 0  # the same model resumes
    # other weights give another id even at the same path and settings
    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_model_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    a = model_fingerprint(other, {"s": 1})
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(other, {"s": 1})["id"] != a["id"]
