"""tools/analysis_tools/ablate_oddetr.py: variant selection, log parsing, the multi-seed table."""

import json
import statistics

import pytest
from ablate_oddetr import (
    VARIANTS,
    instability_series,
    mean_instability,
    second_half_mean,
    select_variants,
    table,
)

from mmdet_detrdistill.engine.match_instability_hook import (
    EMA_SCALAR_KEY,
    RECORD_FILE,
    SCALAR_KEY,
)

pytestmark = pytest.mark.slow  # trains tiny ablations


def _record(ap: float, epoch, layer, minutes: float = 2.0, ema=None) -> dict:
    metrics = dict(bbox_mAP=ap, bbox_mAP_50=2 * ap, bbox_mAP_75=ap / 2)
    if ema is not None:
        metrics['ema/bbox_mAP'] = ema
    return {
        'metrics': metrics,
        'train_time_s': 60 * minutes,
        SCALAR_KEY: epoch,
        EMA_SCALAR_KEY: None if epoch is None else epoch / 2,
        'layer_match_instability': layer,
    }


def test_select_variants_keeps_table_order_and_family_limits():
    assert select_variants(['no-init-query', 'defaults'], 'conditional') == [
        'defaults',
        'no-init-query',
    ]
    assert select_variants(None, 'conditional') == list(VARIANTS)
    # the box-constraint variant has its own Conditional DETR config: skipped by default ...
    assert 'init-box' not in select_variants(None, 'dab')
    assert 'init-box-conf' in select_variants(None, 'dab')  # options only: every family
    # ... and a clear error when asked for explicitly
    with pytest.raises(ValueError, match='init-box.*Conditional DETR.*--family deformable'):
        select_variants(['defaults', 'init-box'], 'deformable')


def test_mean_instability_averages_the_second_half_only(tmp_path):
    log = tmp_path / 'v.log'
    log.write_text(
        'Iter(train) [ 50/200]  loss: 3.0  layer_match_instability: 0.9000\n'
        'epoch_match_instability at iter 50/200: 0.7000 (9 GT boxes of 4 probe images)\n'
        'Iter(train) [100/200]  loss: 3.0  layer_match_instability: 0.8000  '
        'epoch_match_instability: 0.7000\n'
        'epoch_match_instability at iter 100/200: 0.6000 (9 GT boxes of 4 probe images)\n'
        'Iter(train) [150/200]  loss: 2.0  epoch_match_instability: 0.6000  '
        'layer_match_instability: 0.2000\n'
        'epoch_match_instability at iter 150/200: 0.5000 (9 GT boxes of 4 probe images)\n'
        'Iter(train) [200/200]  loss: 2.0  layer_match_instability: 0.1000  '
        'epoch_match_instability: 0.5000\n'
        'epoch_match_instability at iter 200/200: 0.3000 (9 GT boxes of 4 probe images)\n'
    )
    # the layer-wise values of the training lines, never the OD-DETR one shown next to them
    assert mean_instability(str(log)) == pytest.approx(0.15)
    log.write_text('Iter(train) [200/200]  loss: 2.0  epoch_match_instability: 0.5000\n')
    assert mean_instability(str(log)) is None
    # logs written before the rename
    log.write_text('Iter(train) [200/200]  loss: 2.0  match_instability: 0.3000\n')
    assert mean_instability(str(log)) == pytest.approx(0.3)


def test_instability_series_and_its_second_half(tmp_path):
    assert instability_series(str(tmp_path)) == []  # a run without the hook
    probes = [
        {'iter': 50, SCALAR_KEY: 0.7, EMA_SCALAR_KEY: 0.3},
        {'iter': 100, SCALAR_KEY: 0.6, EMA_SCALAR_KEY: 0.2},
        {'iter': 150, SCALAR_KEY: 0.5, EMA_SCALAR_KEY: 0.1},
        {'iter': 200, SCALAR_KEY: 0.3},
    ]
    (tmp_path / RECORD_FILE).write_text(''.join(json.dumps(p) + '\n' for p in probes))
    series = instability_series(str(tmp_path))
    assert series == probes
    assert second_half_mean(series, SCALAR_KEY, 200) == pytest.approx(0.4)  # 150 and 200
    assert second_half_mean(series, EMA_SCALAR_KEY, 200) == pytest.approx(0.1)  # 150 only
    assert second_half_mean(series, EMA_SCALAR_KEY, 1000) is None


def test_table_gives_mean_std_and_each_seed():
    records = {
        'defaults': {
            1: _record(0.026, 0.4, 0.2, ema=0.03),
            0: _record(0.022, 0.3, 0.1, minutes=4.0, ema=0.01),
        },
        'no-init-query': {0: _record(0.031, None, None)},
    }
    rows = table(records).splitlines()
    assert len(rows) == 4
    std = 100 * statistics.stdev([0.022, 0.026])
    defaults = [c.strip() for c in rows[2].split('|')[1:-1]]
    assert defaults == [
        'OD-DETR (defaults)',
        '2',
        f'2.4 ± {std:.1f}',
        f'4.8 ± {2 * std:.1f}',
        f'1.2 ± {std / 2:.1f}',
        '2.2 / 2.6',  # by seed: 0, then 1
        f'2.0 ± {100 * statistics.stdev([0.01, 0.03]):.1f}',  # the EMA model's AP
        '0.350',  # OD-DETR's instability
        '0.175',  # its EMA model's
        '0.150',  # layer-wise
        '3.0 min',
    ]
    single = [c.strip() for c in rows[3].split('|')[1:-1]]
    assert single[:6] == ['no initial-query constraint', '1', '3.1', '6.2', '1.6', '3.1']
    assert single[6:10] == ['n/a', 'n/a', 'n/a', 'n/a']
