"""Rewards and mask losses on hand-made cases, checked against hand computations."""
import math

import numpy as np
import pytest
import torch

from lens_ros.training.losses import dice_loss, mask_loss, sigmoid_bce, upsample_logits
from lens_ros.training.rewards import (box_iou, box_iou_reward, completion_text, mask_iou,
                                       mask_iou_reward, think_format_reward)


class TestThinkFormatReward:
    @pytest.mark.parametrize("text, expected", [
        ("<think>left one</think><answer>[1, 2, 3, 4]</answer>", 1.0),
        ("<think>a\nmultiline\nthought</think>\n  <answer>[1,2,3,4]</answer>", 1.0),  # DOTALL
        ("<think>x</think><answer>y</answer> trailing text", 1.0),  # not anchored at the end
        (" <think>x</think><answer>y</answer>", 0.0),  # anchored at the start
        ("<answer>y</answer>", 0.0),  # no think block
        ("<think>x</think>", 0.0),  # no answer block
        ("<think>x</think> text <answer>y</answer>", 0.0),  # only whitespace in between
        ("<answer>y</answer><think>x</think>", 0.0),  # wrong order
        ("", 0.0),
    ])
    def test_cases(self, text, expected):
        assert think_format_reward([text]) == [expected]

    def test_conversational_completions(self):
        conv = [[{"role": "assistant", "content": "<think>a</think><answer>b</answer>"}]]
        assert think_format_reward(conv) == [1.0]


class TestBoxIouReward:
    def test_squared_iou_of_parsed_box(self):
        # [0,0,10,10] vs [0,0,10,20]: I=100, U=200 -> IoU 0.5 -> reward 0.25
        assert box_iou_reward(["<answer>[0, 0, 10, 10]</answer>"], solution=[[0, 0, 10, 20]]) == [
            0.25]

    def test_formats_the_reference_parses(self):
        sol = [[2, 2, 6, 6]] * 3
        texts = ["(2, 2, 6, 6)", "(2,2),(6,6)", '{"bbox_2d": [2, 2, 6, 6]}']
        assert box_iou_reward(texts, solution=sol) == [1.0, 1.0, 1.0]

    def test_box_inside_think_is_not_the_answer(self):
        text = "<think>maybe [0, 0, 5, 5]</think><answer>[10, 10, 20, 20]</answer>"
        assert box_iou_reward([text], solution=[[10, 10, 20, 20]]) == [1.0]

    def test_no_box_gives_zero(self):
        assert box_iou_reward(["I see nothing", ""], solution=[[0, 0, 1, 1]] * 2) == [0.0, 0.0]

    def test_zero_union_and_inverted_boxes_are_safe(self):
        assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # reference: ZeroDivisionError
        assert box_iou((10, 10, 0, 0), (0, 0, 10, 10)) == 0.0  # inverted: zero area
        assert box_iou_reward(["[3, 3, 3, 3]"], solution=[[3, 3, 3, 3]]) == [0.0]

    def test_partial_overlap_by_hand(self):
        # [0,0,4,4] vs [2,2,6,6]: I=4, U=16+16-4=28
        assert box_iou((0, 0, 4, 4), (2, 2, 6, 6)) == pytest.approx(4 / 28)
        assert box_iou_reward(["[0,0,4,4]"], solution=[[2, 2, 6, 6]]) == [
            pytest.approx((4 / 28) ** 2)]


class TestMaskIouReward:
    def test_by_hand(self):
        gt = np.zeros((4, 4), bool)
        gt[:2] = True  # 8 px
        pred = np.zeros((4, 4), bool)
        pred[:, :2] = True  # 8 px, overlap 4, union 12
        assert mask_iou(pred, gt) == pytest.approx(1 / 3)
        assert mask_iou_reward(["a", "b"], pred_mask=[pred, gt], gt_mask=[gt, gt]) == [
            pytest.approx(1 / 9), 1.0]

    def test_both_empty_is_zero_and_size_mismatch_raises(self):
        empty = np.zeros((3, 3), bool)
        assert mask_iou(empty, empty) == 0.0
        with pytest.raises(ValueError, match="upsample"):
            mask_iou(np.zeros((2, 2), bool), empty)

    def test_missing_predictions_raise(self):
        with pytest.raises(ValueError, match="pred_mask"):
            mask_iou_reward(["a", "b"], pred_mask=[], gt_mask=[])


def test_completion_text_forms():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "xyz"}]) == "xyz"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "q"}]}]) \
        == "q"


class TestMaskLoss:
    def test_bce_by_hand(self):
        logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
        target = torch.tensor([[1, 0], [0, 1]], dtype=torch.bool)
        sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
        expected = -(math.log(sig(0.0)) + math.log(1 - sig(2.0)) + math.log(1 - sig(-1.0))
                     + math.log(sig(3.0))) / 4
        assert sigmoid_bce(logits, target).item() == pytest.approx(expected, rel=1e-6)

    def test_dice_by_hand(self):
        logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
        target = torch.tensor([[1, 0], [0, 1]], dtype=torch.bool)
        p = torch.sigmoid(logits)
        num = 2 * (p[0, 0] + p[1, 1]) + 1
        den = p.sum() + 2 + 1
        assert dice_loss(logits, target).item() == pytest.approx(1 - (num / den).item(), rel=1e-6)
        assert dice_loss(torch.full((3, 3), -50.0), torch.zeros(3, 3)).item() == pytest.approx(
            0.0, abs=1e-6)  # both empty: smooth keeps it defined

    def test_weights_and_batch_mean(self):
        a, b = torch.randn(6, 6, generator=torch.Generator().manual_seed(0)), torch.zeros(6, 6)
        ga, gb = torch.rand(6, 6) > 0.5, torch.zeros(6, 6, dtype=torch.bool)
        out = mask_loss([a, b], [ga, gb], bce_weight=2.0, dice_weight=0.5)
        bce = (sigmoid_bce(a, ga) + sigmoid_bce(b, gb)) / 2
        dice = (dice_loss(a, ga) + dice_loss(b, gb)) / 2
        assert out.bce.item() == pytest.approx(bce.item())
        assert out.dice.item() == pytest.approx(dice.item())
        assert out.total.item() == pytest.approx(2 * bce.item() + 0.5 * dice.item())

    def test_upsampled_to_ground_truth_resolution(self):
        low = torch.full((1, 1, 4, 4), -5.0)
        low[..., :2, :] = 5.0  # top half
        gt = torch.zeros(8, 12, dtype=torch.bool)
        gt[:4] = True
        up = upsample_logits(low, (8, 12))
        assert up.shape == (8, 12) and (up[:3] > 0).all() and (up[5:] < 0).all()
        good = mask_loss([low], [gt]).total
        bad = mask_loss([-low], [gt]).total
        assert good < bad

    def test_gradient_flows_and_mismatch_raises(self):
        lg = torch.zeros(1, 4, 4, requires_grad=True)
        mask_loss([lg], [torch.ones(8, 8, dtype=torch.bool)]).total.backward()
        assert lg.grad is not None and lg.grad.abs().sum() > 0
        with pytest.raises(ValueError, match="one ground-truth mask per"):
            mask_loss([lg], [])
