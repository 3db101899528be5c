"""DETRDistill's logits distillation takes the teacher's boxes cut to the image as its pseudo
ground truth, as the official distill head does (issue #32, item 5): pixel xyxy clamped to
[0, w] x [0, h] of ``img_shape``, normalised back to cxcywh."""

import pytest
import torch
from component_pairs import loss_with_pairs
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh

from mmdet_detrdistill.models.common import OWN_GROUP, DecoderOutputs, clamp_to_image
from mmdet_detrdistill.models.components import (
    AdaptiveMatchKD,
    ContrastiveEmbeddingKD,
    HungarianLogitsKD,
)
from mmdet_detrdistill.models.task_modules.pairing import solve_pairings

L, BS, N, C = 2, 2, 8, 4
METAS = [dict(img_shape=(64, 80)), dict(img_shape=(48, 64))]


def _official_clamp(boxes, img_shape):
    """``_get_teacher_bboxes_distill_single`` then ``_get_distill_target_single`` of the
    official head: cxcywh -> pixel xyxy, clamped to the image, normalised, cxcywh."""
    h, w = img_shape
    xyxy = bbox_cxcywh_to_xyxy(boxes)
    xyxy[..., 0::2] = (xyxy[..., 0::2] * w).clamp(0, w)
    xyxy[..., 1::2] = (xyxy[..., 1::2] * h).clamp(0, h)
    return bbox_xyxy_to_cxcywh(xyxy / xyxy.new_tensor([w, h, w, h]))


def _outputs(seed):
    """Logits and boxes of which many stick out of the image."""
    gen = torch.Generator().manual_seed(seed)
    cls = torch.randn(L, BS, N, C, generator=gen)
    cxcy = torch.rand(L, BS, N, 2, generator=gen)
    wh = torch.rand(L, BS, N, 2, generator=gen) * 0.6 + 0.1
    return DecoderOutputs(cls, torch.cat([cxcy, wh], -1), {OWN_GROUP: slice(0, N)}, None)


def test_clamp_is_the_official_pixel_clamp():
    boxes = _outputs(0).bbox_preds
    for b, meta in enumerate(METAS):
        expected = _official_clamp(boxes[:, b].clone(), meta['img_shape'])
        torch.testing.assert_close(clamp_to_image(boxes[:, b]), expected)
    inside = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 0.6, 0.8]])
    torch.testing.assert_close(clamp_to_image(inside), inside)
    assert (bbox_cxcywh_to_xyxy(boxes) < 0).any()  # the test's boxes do stick out


def test_a_student_on_the_clamped_teacher_boxes_has_zero_logits_kd():
    teacher = _outputs(1)
    clamped = clamp_to_image(teacher.bbox_preds)
    student = DecoderOutputs(teacher.cls_scores.clone(), clamped, {OWN_GROUP: slice(0, N)}, None)
    samples = [DetDataSample(metainfo=m) for m in METAS]
    losses = loss_with_pairs(HungarianLogitsKD(), student, teacher, samples)
    assert len(losses) == 3 * L
    assert max(v.abs().item() for v in losses.values()) < 1e-5, losses
    unclamped = loss_with_pairs(
        HungarianLogitsKD(clamp_teacher_boxes=False), student, teacher, samples
    )
    assert unclamped['detrdistill.logits.d1.loss_bbox'] > 1e-3  # what the clamp changes


def test_d3etr_adaptive_matching_keeps_the_boxes_as_predicted():
    teacher = _outputs(2)
    assert not AdaptiveMatchKD().clamp_teacher_boxes
    kd = AdaptiveMatchKD()
    assert solve_pairings(kd.pairings(), _outputs(1), teacher, METAS)[kd.pairing].teacher is teacher
    assert HungarianLogitsKD().clamp_teacher_boxes and ContrastiveEmbeddingKD().clamp_teacher_boxes


@pytest.mark.parametrize('clamp', [True, False])
def test_contrastive_term_shares_the_logits_matching_only_on_the_same_boxes(clamp):
    student, teacher = _outputs(3), _outputs(4)
    logits = HungarianLogitsKD()
    contrastive = ContrastiveEmbeddingKD(clamp_teacher_boxes=clamp)
    assert (logits.pairing == contrastive.pairing) is clamp
    solved = solve_pairings([logits.pairing, contrastive.pairing], student, teacher, METAS)
    assert len(solved) == (1 if clamp else 2)
    if not clamp:  # its own matching, on the boxes as predicted: D3ETR's adaptive matching's
        own = AdaptiveMatchKD(losses=dict(loss_self_attn=None, loss_cross_attn=None))
        assert own.pairing == contrastive.pairing
        alone = solve_pairings(own.pairings(), student, teacher, METAS)[own.pairing]
        for a, b in zip(alone.layers, solved[contrastive.pairing].layers):
            assert a[:2] == b[:2] and all(torch.equal(x, y) for x, y in zip(a.pairs, b.pairs))
