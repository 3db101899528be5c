"""OD-DETR's blended-cost assignment, now a variant, still gives the losses it gave as the default.

``tests/fixtures/loss_reference_oddetr_blended.json`` holds the OD-DETR configs' values of the
main loss reference as they were before matching distillation became the default (copied, not
recomputed), and the ``model`` keys that select the blended variant.
"""

import json
import os.path as osp

import pytest

from mmdet_detrdistill.testing.loss_reference import config_losses, differences

REFERENCE = osp.join(
    osp.dirname(osp.dirname(__file__)), 'fixtures', 'loss_reference_oddetr_blended.json'
)
with open(REFERENCE) as f:
    BLENDED = json.load(f)


def test_the_variant_is_the_blended_assignment():
    assert BLENDED['options'] == {
        'guided_assignment': {'type': 'ODDETRGuidedAssignment', 'alpha': 0.5}
    }
    assert BLENDED['losses'] and all('/oddetr/' in c for c in BLENDED['losses'])


# the tiny configs run in the fast suite, the real-size ones with -m slow
CONFIGS = [
    c if 'tiny' in c else pytest.param(c, marks=pytest.mark.slow) for c in sorted(BLENDED['losses'])
]


@pytest.mark.parametrize('config', CONFIGS)
def test_blended_variant_losses_equal_the_former_default(config):
    losses = config_losses(config, model_options=BLENDED['options'])
    assert differences(BLENDED['losses'][config], losses) == []
