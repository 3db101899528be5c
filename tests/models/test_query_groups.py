import pytest
import torch

from mmdet_detrdistill.models.common import QueryGroup
from mmdet_detrdistill.models.layers import (
    build_group_self_attn_mask,
    concat_groups,
    group_slices,
)


def test_mask_is_block_diagonal_true_means_masked():
    mask = build_group_self_attn_mask([3, 2, 4], torch.device('cpu'))
    assert mask.shape == (9, 9) and mask.dtype == torch.bool
    blocks = [range(0, 3), range(3, 5), range(5, 9)]
    for gi, rows in enumerate(blocks):
        for gj, cols in enumerate(blocks):
            sub = mask[rows.start : rows.stop, cols.start : cols.stop]
            assert bool(sub.all()) if gi != gj else not bool(sub.any())


def test_single_group_mask_masks_nothing():
    assert not build_group_self_attn_mask([5], torch.device('cpu')).any()


def test_group_slices_and_unique_names():
    assert group_slices(['own', 'a'], [4, 2]) == {'own': slice(0, 4), 'a': slice(4, 6)}
    with pytest.raises(ValueError, match='unique'):
        group_slices(['a', 'a'], [1, 1])


def test_concat_groups_requires_field_on_all_groups():
    a = QueryGroup('a', torch.zeros(1, 2, 4), torch.ones(1, 2, 4))
    b = QueryGroup('b', torch.zeros(1, 3, 4))
    assert concat_groups([a, a], 'query_pos').shape == (1, 4, 4)
    assert concat_groups([b, b], 'query_pos') is None
    with pytest.raises(ValueError, match='query_pos'):
        concat_groups([a, b], 'query_pos')
