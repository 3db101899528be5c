import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS

from mmdet_detrdistill.models.losses import AttentionMapDistillLoss, BinaryKLDistillLoss


def test_binary_kl_zero_when_equal_positive_otherwise():
    loss = BinaryKLDistillLoss(loss_weight=2.0)
    t = torch.randn(6, 5)
    assert loss(t.clone(), t).abs().item() < 1e-6
    assert loss(t + torch.randn(6, 5), t).item() > 0


def test_binary_kl_gradient_equals_plain_bce_gradient():
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    BinaryKLDistillLoss()(s, t).backward()
    s2 = s.detach().clone().requires_grad_()
    (F.binary_cross_entropy_with_logits(s2, t.sigmoid(), reduction='sum') / 4).backward()
    torch.testing.assert_close(s.grad, s2.grad)


def test_former_name_soft_bce_distill_loss_builds_the_binary_kl_loss():
    loss = MODELS.build(dict(type='BinaryKLDistillLoss', loss_weight=2.0))
    assert type(loss) is BinaryKLDistillLoss and loss.loss_weight == 2.0


def test_attention_loss_zero_when_equal_and_shape_checked():
    loss = AttentionMapDistillLoss(loss_weight=10.0, ref_num_keys=7)  # 7 keys: a plain MSE
    a = torch.rand(2, 3, 7).softmax(-1)
    assert loss(a.clone(), a).item() == 0
    torch.testing.assert_close(loss(a + 0.1, a), torch.tensor(10.0 * 0.01))
    with pytest.raises(ValueError, match='cross-attention loss to None'):
        loss(a, a[:, :, :5])
