"""The student's GT losses: heads whose steps take each layer's assigners, the encoder's own."""

import copy

import pytest
import torch
from mmdet.models.task_modules import AssignResult
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData

from mmdet_detrdistill.models.dense_heads import LayerAssignersMixin
from mmdet_detrdistill.models.detectors import GROUP_HEADS, to_group_detector_cfg
from mmdet_detrdistill.models.task_modules import (
    BoundTeacherAssigner,
    QueryPriorAssigner,
)
from mmdet_detrdistill.testing import (
    FAMILY_CONFIGS,
    distiller_cfg,
    make_batch,
    tiny_detr_cfg,
    tiny_dino_cfg,
)

NUM_LAYERS, NUM_QUERIES, NUM_PROPOSALS = 2, 10, 30
#: OD-DETR's assignment that gives the head assigners (the default computes its own losses:
#: tests/models/test_oddetr_matching_distillation.py)
BLENDED = dict(type='ODDETRGuidedAssignment', alpha=0.5)


def _family_cfg(family):
    return tiny_dino_cfg() if family == 'dino' else tiny_detr_cfg(family, num_queries=NUM_QUERIES)


def _head_and_batch(family):
    """Our head of ``family`` and mmdet's, and a batch's GT and metas."""
    torch.manual_seed(0)
    cfg = tiny_detr_cfg(family, num_queries=NUM_QUERIES)
    ours = MODELS.build(to_group_detector_cfg(cfg, 'student'))
    theirs = MODELS.build(copy.deepcopy(cfg)).bbox_head  # its assigner: the detector's train_cfg
    samples = make_batch(ours)['data_samples']
    return ours.bbox_head, theirs, [s.gt_instances for s in samples], [s.metainfo for s in samples]


def _preds(num_classes=3, num=NUM_QUERIES, bs=2, layers=NUM_LAYERS, seed=1):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(layers, bs, num, num_classes, generator=g)
    box = torch.rand(layers, bs, num, 4, generator=g) * 0.5 + 0.25
    return cls, box


class _Fixed:
    """Assigns GT j to query ``queries[j]``, and keeps what it was called with (and the
    attributes of ``head`` then)."""

    def __init__(self, queries, head=None):
        self.queries, self.head, self.calls, self.head_attributes = queries, head, [], []

    def assign(self, pred_instances, gt_instances, img_meta=None, **kwargs):
        self.calls.append((pred_instances, gt_instances, img_meta))
        self.head_attributes.append(dict(vars(self.head or self)))
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        gt_inds = torch.zeros(num_preds, dtype=torch.long)
        labels = torch.full((num_preds,), -1, dtype=torch.long)
        queries = torch.as_tensor(self.queries[:num_gts])
        gt_inds[queries] = torch.arange(num_gts) + 1
        labels[queries] = gt_instances.labels
        return AssignResult(num_gts, gt_inds, None, labels=labels)


@pytest.mark.parametrize('family', [*FAMILY_CONFIGS, 'dino'])
def test_the_head_is_mmdets_subclass_chosen_with_the_detector(family):
    cfg = _family_cfg(family)
    group_cfg = to_group_detector_cfg(cfg, 'teacher')
    assert group_cfg.bbox_head.type == GROUP_HEADS[cfg.bbox_head.type]
    assert cfg.bbox_head.type != group_cfg.bbox_head.type  # the given config is left alone
    head = MODELS.build(group_cfg).bbox_head
    assert isinstance(head, LayerAssignersMixin)
    assert isinstance(head, MODELS.get(cfg.bbox_head.type))


def test_an_unsupported_head_type_is_refused_naming_the_key():
    cfg = tiny_detr_cfg('conditional')
    cfg.bbox_head.type = 'DETRHead'
    with pytest.raises(ValueError, match=r'model\.student\.bbox_head\.type.*DETRHead'):
        to_group_detector_cfg(cfg, 'student')


@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable-twostage'])
def test_with_the_heads_assigner_the_losses_are_mmdets(family):
    ours, theirs, gts, metas = _head_and_batch(family)
    cls, box = _preds()
    enc = {}
    if family == 'deformable-twostage':
        enc_cls, enc_box = _preds(num_classes=3, num=NUM_PROPOSALS, layers=1, seed=2)
        enc = dict(enc_cls_scores=enc_cls[0], enc_bbox_preds=enc_box[0])
    args = dict(batch_gt_instances=gts, batch_img_metas=metas, **enc)
    want = theirs.loss_by_feat(cls, box, **args)
    for layer_assigners in (None, [[None] * len(gts)] * NUM_LAYERS):
        got = ours.loss_by_feat(cls, box, **args, layer_assigners=layer_assigners)
        assert list(got) == list(want)  # same keys, same order (the total sums in this order)
        for key in want:
            assert torch.equal(got[key], want[key]), key


def test_each_layer_is_assigned_by_its_own_assigners_image_by_image():
    """Both layers predict the same; only their assigners differ, and each layer's box
    targets are exactly its own assigners' matches."""
    head, _, gts, metas = _head_and_batch('conditional')
    cls, box = _preds()
    cls[1], box[1] = cls[0], box[0]
    layers = [[_Fixed([0, 1, 2], head) for _ in gts], [_Fixed([9, 8, 7], head) for _ in gts]]
    before = dict(vars(head))
    losses = head.loss_by_feat(cls, box, gts, metas, layer_assigners=layers)
    # nothing set on the head, after the call or while it assigns
    _assert_same_attributes(vars(head), before)
    for assigner in (a for layer in layers for a in layer):
        (during,) = assigner.head_attributes
        _assert_same_attributes(during, before)
    for layer, key in enumerate(('d0.loss_bbox', 'loss_bbox')):
        want = sum(
            _l1_to_matches(box[layer, b], gts[b], metas[b], a.queries)
            for b, a in enumerate(layers[layer])
        )
        want = head.loss_bbox.loss_weight * want / sum(len(g) for g in gts)
        torch.testing.assert_close(losses[key], want)
        for b, assigner in enumerate(layers[layer]):  # once, with its own image
            ((preds, gt, meta),) = assigner.calls
            assert gt is gts[b] and meta is metas[b]
            assert torch.equal(preds.scores, cls[layer, b])
    assert not torch.equal(losses['d0.loss_bbox'], losses['loss_bbox'])  # the test can fail
    one = head.loss_by_feat_single(cls[0], box[0], gts, metas, layers[1])
    assert torch.equal(one[1], losses['loss_bbox'])


def test_one_assigner_per_image_and_per_layer_is_required():
    head, _, gts, metas = _head_and_batch('conditional')
    cls, box = _preds()
    with pytest.raises(ValueError, match='1 assigner lists for 2 decoder layers'):
        head.loss_by_feat(cls, box, gts, metas, layer_assigners=[[None, None]])
    with pytest.raises(ValueError, match='1 assigners for 2 images'):
        head.loss_by_feat(cls, box, gts, metas, layer_assigners=[[None]] * NUM_LAYERS)


def _assert_same_attributes(now, before):
    assert now.keys() == before.keys()
    assert [k for k, v in before.items() if now[k] is not v] == []


def _l1_to_matches(boxes, gt, meta, queries):
    h, w = meta['img_shape']
    scale = boxes.new_tensor([w, h, w, h])
    targets = bbox_xyxy_to_cxcywh(gt.bboxes / scale)
    return (boxes[list(queries[: len(gt)])] - targets).abs().sum()


@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable', 'deformable-twostage'])
def test_student_gt_loss_is_mmdets_loss_without_a_component(family):
    """The distiller's student losses are those mmdet's own detector computes (DINO's,
    with its DN losses: ``test_dino_groups.py``)."""
    torch.manual_seed(0)
    cfg = tiny_detr_cfg(family, dropout=0.0)
    model = MODELS.build(distiller_cfg(cfg, cfg, components=None))
    model.init_weights()
    theirs = MODELS.build(copy.deepcopy(cfg)).train()
    theirs.load_state_dict(model.student.state_dict())
    model.train()
    batch = make_batch(model)
    expected = theirs(**batch, mode='loss')
    out = model.decoder_outputs(model.student, batch['inputs'], batch['data_samples'], ())
    losses = model.student_gt_loss(out, batch['data_samples'])
    assert [k for k in losses if k != 'layer_match_instability'] == list(expected)
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, msg=key)


@pytest.mark.parametrize('family', ['conditional', 'deformable-twostage'])
def test_a_step_sets_no_attribute_on_the_head(family):
    """Guided assignment (an assigner per layer and image) leaves the student's head as it
    was, also while it assigns: its assigner and every other attribute."""
    torch.manual_seed(0)
    cfg = distiller_cfg(
        tiny_detr_cfg(family), None, method='ODDETRDistiller', guided_assignment=BLENDED
    )
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    head = model.student.bbox_head
    before, during = dict(vars(head)), []
    guided = model.components['guided'].assigner
    original = guided.assign
    guided.assign = lambda *a, **k: during.append(dict(vars(head))) or original(*a, **k)
    model(**make_batch(model), mode='loss')
    assert len(during) == NUM_LAYERS * 2  # layers x images
    for attributes in (vars(head), *during):
        _assert_same_attributes(attributes, before)


def _record(obj, name, calls):
    original = getattr(obj, name)

    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    setattr(obj, name, recorded)


def test_two_stage_encoder_proposals_never_see_the_guided_assigner():
    torch.manual_seed(0)
    cfg = distiller_cfg(
        tiny_detr_cfg('deformable-twostage'),
        None,
        method='ODDETRDistiller',
        guided_assignment=BLENDED,
    )
    model = MODELS.build(cfg)
    model.init_weights()
    guided, own = [], []
    _record(model.components['guided'].assigner, 'assign', guided)
    _record(model.student.bbox_head.assigner, 'assign', own)
    batch = make_batch(model)
    losses = model.train()(**batch, mode='loss')
    assert {'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou'} <= set(losses)
    bs = len(batch['data_samples'])
    assert len(guided) == NUM_LAYERS * bs
    assert all(len(args[0]) == NUM_QUERIES for args, _ in guided)
    assert all('teacher_pred_instances' in kwargs for _, kwargs in guided)
    # the head's own assigner served the proposals only: class-agnostic GT, more predictions
    assert len(own) == bs
    for args, kwargs in own:
        preds = kwargs.get('pred_instances', args[0] if args else None)
        gt = kwargs.get('gt_instances', args[1] if len(args) > 1 else None)
        assert len(preds) > NUM_QUERIES and not gt.labels.any()


@pytest.mark.parametrize('method', ['ODDETRDistiller', 'DETRDistillDistiller'])
def test_img_metas_the_head_sees_hold_no_key_of_ours(method):
    torch.manual_seed(0)
    student = tiny_detr_cfg('conditional')
    teacher = tiny_detr_cfg('conditional', num_queries=12)
    only_query_prior = dict(logits_kd=None, feature_kd=None, contrastive=None)
    # the head's steps: OD-DETR's default computes its own losses (its metas: see
    # tests/models/test_oddetr_matching_distillation.py)
    kwargs = (
        only_query_prior if method == 'DETRDistillDistiller' else dict(guided_assignment=BLENDED)
    )
    model = MODELS.build(distiller_cfg(student, teacher, method=method, **kwargs))
    model.init_weights()
    seen = []
    _record(model.student.bbox_head, '_get_targets_single', seen)
    batch = make_batch(model)
    model.train()(**batch, mode='loss')
    theirs = {frozenset(s.metainfo) for s in batch['data_samples']}
    metas = [kwargs.get('img_meta', args[3] if len(args) > 3 else None) for args, kwargs in seen]
    assert len(metas) >= NUM_LAYERS * len(batch['data_samples'])
    assert all(frozenset(m) in theirs for m in metas)


def test_bound_assigner_gives_the_assigner_that_images_teacher_predictions():
    g = torch.Generator().manual_seed(0)
    teacher = InstanceData(scores=torch.randn(6, 3, generator=g), bboxes=_xyxy(6, g))
    student = InstanceData(scores=torch.randn(6, 3, generator=g), bboxes=_xyxy(6, g))
    gts = InstanceData(bboxes=_xyxy(2, g), labels=torch.tensor([0, 2]))
    meta = dict(img_shape=(100, 100))
    prior = QueryPriorAssigner()
    bound = BoundTeacherAssigner(prior, teacher).assign(student, gts, meta)
    direct = prior.assigner.assign(teacher, gts, img_meta=meta)
    assert torch.equal(bound.gt_inds, direct.gt_inds)
    with pytest.raises(KeyError, match='teacher_pred_instances'):
        prior.assign(student, gts, meta)


def _xyxy(n, g):
    xy = torch.rand(n, 2, generator=g) * 50
    return torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 40], 1)
