"""OD-DETR's matching distillation: each student query learns its own GT and its twin's."""

import pytest
import torch
from mmdet.models.losses import QualityFocalLoss
from mmdet.models.task_modules import AssignResult
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData

from mmdet_detrdistill.models.components import ODDETRMatchingDistillation
from mmdet_detrdistill.models.task_modules import twin_query_targets
from mmdet_detrdistill.testing import FAMILY_CONFIGS, make_batch, tiny_detr_cfg, tiny_dino_cfg

DECODER_KEYS = ('loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls', 'd0.loss_bbox', 'd0.loss_iou')
DINO_SHAPES = ((3, 96, 96), (3, 96, 80))


def _build(family='conditional', **guided):
    torch.manual_seed(0)
    student = tiny_dino_cfg() if family == 'dino' else tiny_detr_cfg(family, dropout=0.0)
    model = MODELS.build(dict(type='ODDETRDistiller', student=student, guided_assignment=guided))
    model.init_weights()
    return model.train()


def _student_out(model, family):
    shapes = DINO_SHAPES if family == 'dino' else ((3, 64, 64), (3, 64, 48))
    batch = make_batch(model, image_shapes=shapes)
    torch.manual_seed(1)  # DINO's denoising queries
    out = model.decoder_outputs(model.student, batch['inputs'], batch['data_samples'], ())
    return out, batch['data_samples']


def _mmdet_losses(head, out, samples, **kwargs):
    """The head's own steps (mmdet's losses) on the student's queries mmdet's head sees."""
    mmdets = slice(0, out.slices['own'].stop)
    return head.loss_by_feat(
        out.cls_scores[:, :, mmdets],
        out.bbox_preds[:, :, mmdets],
        batch_gt_instances=[s.gt_instances for s in samples],
        batch_img_metas=[s.metainfo for s in samples],
        **head.loss_by_feat_kwargs(out.head_inputs),
        **kwargs,
    )


def _assignment(num_queries, query_of_gt):
    gt_inds = torch.zeros(num_queries, dtype=torch.long)
    for gt, query in enumerate(query_of_gt):
        gt_inds[query] = gt + 1
    return AssignResult(len(query_of_gt), gt_inds, None, labels=None)


def test_targets_are_own_matches_then_the_twins_other_matches():
    own = _assignment(5, [0, 3])  # GT 0 -> query 0, GT 1 -> query 3
    twin = _assignment(5, [3, 2, 4])  # the twins: GT 0 -> 3, GT 1 -> 2, GT 2 -> 4
    targets = twin_query_targets(own, twin, twin_weight=0.5)
    assert targets.queries.tolist() == [0, 3, 2, 3, 4] and targets.gts.tolist() == [0, 1, 1, 0, 2]
    assert targets.weights.tolist() == [1, 1, 0.5, 0.5, 0.5]
    same = twin_query_targets(own, own, twin_weight=1.0)  # identical twins: one target each
    assert same.queries.tolist() == [0, 3] and same.gts.tolist() == [0, 1]
    alone = twin_query_targets(own, twin, twin_weight=0.0)
    assert alone.queries.tolist() == [0, 3]


class _Fixed:
    """Assigns GT j to query ``queries[j]``."""

    def __init__(self, queries):
        self.queries = queries

    def assign(self, pred_instances, gt_instances, img_meta=None, **kwargs):
        return _assignment(len(pred_instances), self.queries[: len(gt_instances)])


def _two_gts_crossed_twins():
    """One 100 x 100 image, GT A (class 0) and B (class 2). Student query 0 is matched to A
    (fixed), query 1 to B; the teacher's query 0 sits on B and its query 1 on A, so the
    twins' Hungarian matching is crossed. Query 0's box overlaps both."""
    meta = dict(img_shape=(100, 100))
    gt = InstanceData(
        bboxes=torch.tensor([[0.0, 0, 50, 50], [50, 50, 100, 100]]), labels=torch.tensor([0, 2])
    )
    norm = bbox_xyxy_to_cxcywh(gt.bboxes / 100)
    box = (
        torch.tensor(
            [[0.5, 0.5, 0.5, 0.5], [0.3, 0.3, 0.4, 0.4], [0.1, 0.9, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1]]
        )[None, None]
        .clone()
        .requires_grad_(True)
    )
    cls = torch.full((1, 1, 4, 3), -4.0, requires_grad=True)
    twin_box = box.detach().clone()
    twin_box[0, 0, 0], twin_box[0, 0, 1] = norm[1], norm[0]
    twin_cls = torch.full((1, 1, 4, 3), -4.0)
    twin_cls[0, 0, 0, 2] = twin_cls[0, 0, 1, 0] = 4.0
    return cls, box, twin_cls, twin_box, gt, meta


@pytest.mark.parametrize('twin_weight', [1.0, 0.5])
def test_a_query_whose_twin_matched_another_gt_is_pulled_to_both(twin_weight):
    component = _build(twin_weight=twin_weight).components['guided']
    cls, box, twin_cls, twin_box, gt, meta = _two_gts_crossed_twins()
    losses = component.decoder_losses(
        cls, box, [gt], [meta], [[_Fixed([0, 1])]], twin_cls=twin_cls, twin_box=twin_box
    )
    (losses['loss_bbox'] + losses['loss_iou']).backward(inputs=[box])
    # independently: L1 5 and GIoU 2 toward A and B for queries 0 and 1, 4 pairs weighted
    ref_box = box.detach().clone().requires_grad_(True)
    b = ref_box[0, 0]
    targets = bbox_xyxy_to_cxcywh(gt.bboxes / 100)
    pairs = [(0, 0, 1.0), (1, 1, 1.0), (0, 1, twin_weight), (1, 0, twin_weight)]
    num = sum(w for _, _, w in pairs)
    ref = 0
    for q, j, w in pairs:
        ref = ref + 5 * w * (b[q] - targets[j]).abs().sum() / num
        giou = _giou(b[q], gt.bboxes[j])
        ref = ref + 2 * w * (1 - giou) / num
    ref.backward()
    torch.testing.assert_close(box.grad, ref_box.grad)
    toward_a_only = torch.autograd.grad(5 * (b[0] - targets[0]).abs().sum(), ref_box)[0]
    assert not torch.allclose(box.grad[0, 0, 0], toward_a_only[0, 0, 0])  # B pulls too
    losses['loss_cls'].backward(inputs=[cls])
    assert cls.grad[0, 0, 0, 0] < 0 and cls.grad[0, 0, 0, 2] < 0  # classes of A and B
    assert cls.grad[0, 0, 0, 1] > 0  # no target of class 1
    y = bbox_overlaps(_xyxy(b[0].detach()) * 100, gt.bboxes)  # query 0's IoU with A, B
    assert (y > torch.sigmoid(torch.tensor(-4.0))).all()  # so both pull the score up


def _xyxy(cxcywh):
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)[None]


def _giou(cxcywh, gt_xyxy):
    return bbox_overlaps(_xyxy(cxcywh) * 100, gt_xyxy[None], mode='giou', is_aligned=True)[0]


@pytest.mark.parametrize('family', [*FAMILY_CONFIGS, 'dino'])
def test_identical_twins_give_quality_focal_loss_on_the_students_own_matching(family, monkeypatch):
    """Teacher outputs equal to the student's: each matched query has one target, and the
    decoder losses are mmdet's with its QualityFocalLoss (the head's class-loss weight)."""
    model = _build(family)
    out, samples = _student_out(model, family)
    ours = model.student_gt_loss(out, samples, out, teacher_on_student_queries=out)
    head = model.student.bbox_head
    qfl = QualityFocalLoss(use_sigmoid=True, beta=2.0, loss_weight=head.loss_cls.loss_weight)
    monkeypatch.setattr(head, 'loss_cls', qfl)
    want = _mmdet_losses(head, out, samples)
    for key in DECODER_KEYS:  # scalars (mmdet's class loss is (1,) with a synced normaliser)
        torch.testing.assert_close(ours[key], want[key].reshape(()), msg=key)
    assert list(ours)[: len(DECODER_KEYS)] == list(want)[: len(DECODER_KEYS)]  # mmdet's order
    assert 0.0 <= ours['layer_match_instability'] <= 1.0


def test_dino_denoising_and_encoder_losses_are_mmdets(monkeypatch):
    """The matching queries only go to the matching distillation; DINO's denoising queries
    (and the selected proposals) keep mmdet's losses, exactly."""
    model = _build('dino')
    out, samples = _student_out(model, 'dino')
    component, seen = model.components['guided'], []
    decoder_losses = component.decoder_losses

    def spy(cls, *args, **kwargs):
        seen.append(cls.shape)
        return decoder_losses(cls, *args, **kwargs)

    monkeypatch.setattr(component, 'decoder_losses', spy)
    twins = model.teacher_on_queries(out.own_queries, out, samples)  # the EMA's second pass
    ours = model.student_gt_loss(out, samples, out, teacher_on_student_queries=twins)
    want = _mmdet_losses(model.student.bbox_head, out, samples)
    assert out.slices['own'].start > 0  # denoising queries lead
    assert [s[2] for s in seen] == [model.student.num_queries]
    denoising = [k for k in want if 'dn_' in k or k.startswith('enc_')]
    assert len(denoising) == 3 + 3 * model.student.decoder.num_layers
    for key in denoising:
        assert torch.equal(ours[key], want[key]), key
    assert not torch.equal(ours['loss_cls'], want['loss_cls'])  # the test can fail


def test_teacher_layer_last_matches_every_layer_to_the_teachers_last():
    cls, box, twin_cls, twin_box, gt, meta = _two_gts_crossed_twins()
    stack = [lambda x: torch.cat([x, x]), lambda x: torch.cat([x.flip(2), x])]  # layer 0 other
    student = [stack[0](cls), stack[0](box)]
    twins = [stack[1](twin_cls), stack[1](twin_box)]
    assigners = [[_Fixed([0, 1])]] * 2
    last = _build(teacher_layer='last').components['guided']
    same = _build().components['guided']
    got = last.decoder_losses(*student, [gt], [meta], assigners, *twins)
    want = same.decoder_losses(
        *student, [gt], [meta], assigners, stack[0](twin_cls), stack[0](twin_box)
    )
    for key in DECODER_KEYS:
        torch.testing.assert_close(got[key], want[key], msg=key)
    flipped = same.decoder_losses(*student, [gt], [meta], assigners, *twins)
    assert not torch.equal(flipped['d0.loss_bbox'], got['d0.loss_bbox'])  # the test can fail


def test_a_step_matches_student_and_twins_with_the_heads_assigner_and_its_metas():
    """Per layer and image the head's assigner matches the student, then the twins; the metas
    it sees are the batch's own."""
    model = _build('dab')
    head = model.student.bbox_head
    before, calls = dict(vars(head)), []
    original = head.assigner.assign

    def recorded(pred_instances, gt_instances, img_meta=None, **kwargs):
        calls.append(img_meta)
        assert vars(head).keys() == before.keys()
        return original(pred_instances, gt_instances, img_meta=img_meta, **kwargs)

    head.assigner.assign = recorded
    batch = make_batch(model)
    model(**batch, mode='loss')
    assert len(calls) == 2 * model.student.decoder.num_layers * len(batch['data_samples'])
    theirs = [frozenset(s.metainfo) for s in batch['data_samples']]
    assert all(frozenset(m) in theirs for m in calls)


def test_build_errors_name_the_value():
    with pytest.raises(ValueError, match='twin_weight must be in'):
        ODDETRMatchingDistillation(twin_weight=2.0)
    with pytest.raises(ValueError, match="teacher_layer must be one of .*'first'"):
        ODDETRMatchingDistillation(teacher_layer='first')
    with pytest.raises(ValueError, match=r'model\.guided_assignment: twin_weight'):
        MODELS.build(
            dict(
                type='ODDETRDistiller',
                student=tiny_detr_cfg('dab'),
                guided_assignment=dict(twin_weight=-1),
            )
        )
