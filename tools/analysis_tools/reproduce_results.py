"""Every table of the result reports (docs/reports/), from one command.

    python tools/analysis_tools/reproduce_results.py [--list] [--only STEP [STEP ...]]
        [--keep-going] [--log-dir work_dirs/reproduce]

Runs, one after another, the commands of the reports' tables (the steps below, each a shell
command exactly as the report prints it), so that the cost benchmarks run alone on the machine,
as the reports' were. Each step's output goes to LOG_DIR/STEP.log; progress (step
i of n, elapsed time) is printed as it goes, and a summary table at the end. The tools reuse
finished training runs while their configs are unchanged, so a rerun after an interruption
picks up where it stopped, and a step whose runs all exist only collects.

All steps take about 15 hours on 2 CPU cores; ``--only`` runs some of them (``--list`` shows
them, with where their results go). A failing step stops the run (``--keep-going`` goes on to
the next) and the exit status is 1.

The reports whose tables these are: docs/reports/2026-11-30_accuracy_cpu.md and
docs/reports/2026-11-30_training_cost_cpu.md.
"""

import argparse
import os
import os.path as osp
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))  # the repository

ABLATE = 'OMP_NUM_THREADS=1 python tools/analysis_tools/ablate_oddetr.py'
STEP_TIME = 'OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_step_time.py'
DAB_TEACHER = 'configs/embedded/dab-detr_tiny-teacher_1xb8-synth.py'
REAL_COND_DAB = (
    'configs/{d3etr/d3etr,detrdistill/detrdistill}_{cond-detr-r101_cond-detr,'
    'dab-detr-r101_dab-detr}-r50_8xb2-50e_coco.py '
    'configs/oddetr/oddetr_{cond,dab}-detr-r50_8xb2-50e_coco.py'
)
REAL_DEFORMABLE = (
    'configs/{d3etr/d3etr,detrdistill/detrdistill}'
    '_deformable-detr-r101_deformable-detr-r50_16xb2-50e_coco.py '
    'configs/oddetr/oddetr_deformable-detr-r50_16xb2-50e_coco.py'
)
REAL_DINO = (  # mmdet's DINO-4scale R50 student; D3ETR and DETRDistill: Swin-L 5-scale teacher
    'configs/{d3etr/d3etr,detrdistill/detrdistill}'
    '_dino-5scale-swin-l_dino-4scale-r50_8xb2-12e_coco.py '
    'configs/oddetr/oddetr_dino-4scale-r50_8xb2-12e_coco.py'
)
REAL_COND = (
    'configs/{d3etr/d3etr,detrdistill/detrdistill}_cond-detr-r101_cond-detr-r50_8xb2-50e_coco.py'
)


@dataclass(frozen=True)
class Step:
    """One report command and the table it fills."""

    name: str
    table: str  # report (sub)section in docs/reports/
    command: str  # run with bash, from the repository root
    results: str  # where its numbers are written


def _dab_settings(anchors: bool, work_dir: str) -> str:
    """A DAB teacher run of the accuracy report's "How the DAB settings were found" table."""
    return (
        f'python tools/train.py {DAB_TEACHER} --work-dir {work_dir} --cfg-options '
        f'model.with_random_refpoints={anchors} model.positional_encoding.temperature=20 '
        'train_cfg.val_interval=1000 randomness.seed=0'
    )


DATA = Step(
    'data',
    'The generated dataset (every training step)',
    'python tools/make_synthetic_coco.py',
    'data/synth_coco (kept if present)',
)
STEPS: List[Step] = [
    DATA,
    Step(
        'demo',
        'The embedded default',
        'python tools/run_demo.py',
        'work_dirs/demo/results.md',
    ),
    Step(
        'demo-detrdistill',
        'The embedded default',
        'OMP_NUM_THREADS=1 python tools/run_demo.py --method detrdistill',
        'work_dirs/demo/results.md',
    ),
    Step(
        'demo-oddetr',
        'The embedded default',
        f'{ABLATE} --variants defaults',
        'work_dirs/ablate_oddetr/ablation.md',
    ),
    Step(
        'ablation',
        'OD-DETR ablation',
        ABLATE,
        'work_dirs/ablate_oddetr/ablation.md',
    ),
    Step(
        'ablation-3seeds',
        'OD-DETR ablation',
        f'{ABLATE} --variants defaults no-init-query --seeds 0 1 2',
        'work_dirs/ablate_oddetr/ablation.md',
    ),
    Step(
        'oddetr-instability',
        # the report's clutter rows are of the scenes' version 1; this makes the current version
        'OD-DETR instability per epoch (Fig. 1), Conditional, shapes and clutter scenes',
        f'{ABLATE} --dataset shapes --seeds 0 1 2 --variants alone defaults guided-blended && '
        f'{ABLATE} --dataset clutter --seeds 0 1 2 --variants alone defaults && '
        'python tools/analysis_tools/plot_instability.py work_dirs/ablate_oddetr/ablation.json '
        'work_dirs/ablate_oddetr_clutter/ablation.json --titles "Conditional, shapes" '
        '"Conditional, clutter" --out work_dirs/instability_oddetr_conditional.png',
        'work_dirs/ablate_oddetr{,_clutter}/ablation.md, '
        'work_dirs/instability_oddetr_conditional.png',
    ),
    Step(
        'clutter-deformable',
        'Calibrating the clutter scenes (Deformable DETR, scenes of the current version)',
        'OMP_NUM_THREADS=1 python tools/analysis_tools/ablate_oddetr.py --family deformable '
        '--dataset clutter --seeds 0 1 2 --variants alone defaults',
        'work_dirs/ablate_oddetr_deformable_clutter/ablation.md',
    ),
    Step(
        'accuracy',
        'Accuracy study (all three families)',
        'python tools/analysis_tools/benchmark_accuracy.py --families conditional deformable dab',
        'work_dirs/accuracy/accuracy.md, accuracy_FAMILY.png',
    ),
    Step(
        'accuracy-clutter-conditional',
        'Clutter scenes (current version), Conditional DETR: every method, 3 seeds',
        'OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_accuracy.py --dataset clutter '
        '--families conditional --work-dir work_dirs/accuracy_clutter '
        '--variant oddetr blended model.guided_assignment.type=ODDETRGuidedAssignment',
        'work_dirs/accuracy_clutter/accuracy.md, accuracy_conditional.png',
    ),
    Step(
        'accuracy-clutter-deformable',
        'Clutter scenes (current version), Deformable DETR: every method and variant, 3 seeds',
        'OMP_NUM_THREADS=1 python tools/analysis_tools/benchmark_accuracy.py --dataset clutter '
        '--families deformable --work-dir work_dirs/accuracy_clutter --seeds 0 1 2 '
        '--variant detrdistill teacher-ref model.query_prior.reference_points=teacher '
        '--variant oddetr blended model.guided_assignment.type=ODDETRGuidedAssignment',
        'work_dirs/accuracy_clutter/accuracy.md, accuracy_deformable.png',
    ),
    Step(
        'accuracy-dino',
        'Accuracy study: DINO family (3 seeds, 500 iterations)',
        'python tools/analysis_tools/benchmark_accuracy.py --families dino --iters 500 '
        '--work-dir work_dirs/accuracy_dino',
        'work_dirs/accuracy_dino/accuracy.md, accuracy_dino.png',
    ),
    Step(
        'dab-settings-mmdet',
        'How the DAB settings were found',
        _dab_settings(False, 'work_dirs/dab_settings/mmdet'),
        'work_dirs/dab_settings/mmdet (log: AP, losses)',
    ),
    Step(
        'dab-settings-anchors',
        'How the DAB settings were found',
        _dab_settings(True, 'work_dirs/dab_settings/random_anchors'),
        'work_dirs/dab_settings/random_anchors (log: AP, losses)',
    ),
    Step(
        'cost-tiny',
        'Training cost: tiny configs',
        f'{STEP_TIME} configs/*/*tiny*-s_1xb8-synth.py --size 128 --batch 8 --iters 10 --threads 1',
        'its log (summary table)',
    ),
    Step(
        'cost-320',
        'Training cost: real configs, 320 px',
        f'{STEP_TIME} {REAL_COND_DAB} {REAL_DEFORMABLE} --size 320 --batch 2 --iters 3 --threads 1',
        'its log (summary table)',
    ),
    Step(
        'cost-320-dino',
        'Training cost: DINO, 320 px',
        f'{STEP_TIME} {REAL_DINO} --size 320 --batch 2 --iters 3 --threads 1',
        'its log (summary table)',
    ),
    Step(
        'profile-dino-oddetr',
        'DINO step: where the time goes (OD-DETR)',
        'OMP_NUM_THREADS=1 python tools/analysis_tools/profile_step_stages.py '
        'configs/oddetr/oddetr_dino-4scale-r50_8xb2-12e_coco.py --size 320 --batch 2 --iters 2',
        'its log (the stage table)',
    ),
    Step(
        'profile-dino-oddetr-components',
        "DINO step: what each of OD-DETR's components costs",
        'for c in init_query guided_assignment aux_groups; do OMP_NUM_THREADS=1 python '
        'tools/analysis_tools/profile_step_stages.py '
        'configs/oddetr/oddetr_dino-4scale-r50_8xb2-12e_coco.py --size 320 --batch 2 --iters 2 '
        '--cfg-options model.$c=None || exit 1; done',
        'docs/results/profile_oddetr_dino_320.md',
    ),
    Step(
        'profile-dino-oddetr-init-query-k',
        "DINO step: OD-DETR's initial-query group of the EMA's K most confident queries",
        'for k in 300 100; do OMP_NUM_THREADS=1 python '
        'tools/analysis_tools/profile_step_stages.py '
        'configs/oddetr/oddetr_dino-4scale-r50_8xb2-12e_coco.py --size 320 --batch 2 --iters 2 '
        '--cfg-options model.init_query.num_queries=$k || exit 1; done',
        'docs/results/profile_oddetr_dino_320.md',
    ),
    Step(
        'allocator-release-tiny',
        'Training cost: allocator, side by side',
        f'{STEP_TIME} configs/*/*tiny*-s_1xb8-synth.py '
        '--size 128 --batch 8 --iters 10 --threads 1 --allocator release',
        'its log (summary table)',
    ),
    Step(
        'allocator-release-320',
        'Training cost: allocator, side by side',
        f'{STEP_TIME} {REAL_COND_DAB} '
        '--size 320 --batch 2 --iters 3 --threads 1 --allocator release',
        'its log (summary table)',
    ),
    # Deformable DETR at 800 px does not fit this 23 GiB VM (the D3ETR R101 -> R50 benchmark was
    # killed out of memory at 14.1 GiB resident, 2026-12-07): the GPU check measures it
    Step(
        'cost-800',
        'Training cost: at COCO image size',
        f'{STEP_TIME} {REAL_COND_DAB} --size 800 --batch 2 --iters 2 --threads 1',
        'its log (summary table)',
    ),
    Step(
        'matching-1-thread',
        'Training cost: threaded matching',
        f'{STEP_TIME} {REAL_COND} --size 320 --batch 2 --iters 3 --threads 1 --solver-threads 1',
        'its log (matching per step)',
    ),
    Step(
        'matching-default-threads',
        'Training cost: threaded matching',
        f'{STEP_TIME} {REAL_COND} --size 320 --batch 2 --iters 3 --threads 1',
        'its log (matching per step)',
    ),
]


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--list', action='store_true', help='print the steps and exit')
    parser.add_argument('--only', nargs='+', metavar='STEP', help='run these steps (in order)')
    parser.add_argument('--keep-going', action='store_true', help='go on after a failed step')
    parser.add_argument('--log-dir', default='work_dirs/reproduce', help='one log per step')
    return parser.parse_args(argv)


def select(steps: List[Step], only: Sequence[str] = None) -> List[Step]:
    """The steps named in ``only`` (all if None), in the order of ``steps``; the dataset step
    always comes first (it does nothing when the data exist)."""
    if not only:
        return list(steps)
    names = [s.name for s in steps]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise SystemExit(
            f'--only: no step named {", ".join(unknown)}; the steps are: {", ".join(names)} '
            '(python tools/analysis_tools/reproduce_results.py --list)'
        )
    return [s for s in steps if s.name in only or s is DATA]


def _minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min'


def run_steps(steps: List[Step], log_dir: str, keep_going: bool = False) -> int:
    """Run each step's command with bash from the repository root; 0 if all succeeded."""
    os.makedirs(log_dir, exist_ok=True)
    rows, start = [], time.time()
    for i, step in enumerate(steps, 1):
        log = osp.join(log_dir, f'{step.name}.log')
        print(
            f'[{i}/{len(steps)}] {step.name} ({step.table}), {_minutes(time.time() - start)} '
            f'so far\n    $ {step.command}\n    log: {log}',
            flush=True,
        )
        t0 = time.time()
        with open(log, 'w') as f:
            f.write(f'$ {step.command}\n')
            f.flush()
            rc = subprocess.run(
                ['bash', '-c', step.command], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT
            ).returncode
        status = 'ok' if rc == 0 else f'FAILED (exit {rc})'
        rows.append((step, status, time.time() - t0, log))
        print(f'    {status} in {_minutes(time.time() - t0)}', flush=True)
        if rc != 0 and not keep_going:
            print(f'Stopped at {step.name}: see the end of {log}.', flush=True)
            break
    print('\n| step | table | status | time | results | log |\n|---|---|---|---|---|---|')
    for step, status, seconds, log in rows:
        print(
            f'| {step.name} | {step.table} | {status} | {_minutes(seconds)} | {step.results} '
            f'| {log} |'
        )
    return 0 if all(status == 'ok' for _, status, _, _ in rows) else 1


def main(argv: Sequence[str] = None) -> int:
    args = parse_args(argv)
    steps = select(STEPS, args.only)
    if args.list:
        for step in steps:
            print(f'{step.name}  [{step.table}] -> {step.results}\n    {step.command}')
        return 0
    return run_steps(steps, args.log_dir, args.keep_going)


if __name__ == '__main__':
    sys.exit(main())
