# D3ETR across families and query counts on the embedded default: the tiny DINO teacher with 90
# queries -> the tiny Deformable DETR student with 30, generated data. The tiny counterpart of
# d3etr_dino-4scale-r50_deformable-detr-r50_16xb2-50e_coco.py (900 -> 300 queries): the student's
# 30 queries are matched to 30 of the teacher's 90 predictions, and the self-attention maps are
# compared on the matched queries, each side renormalised over them (AttentionMapDistillLoss).
# Fixed matching is off: a DINO query has no Deformable DETR equivalent.
#   python tools/analysis_tools/benchmark_accuracy.py --families dino-deformable --methods d3etr
_base_ = './d3etr_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py'

model = dict(
    teacher='{{fileDirname}}/../embedded/dino_tiny-teacher-q90_1xb8-synth.py',
    matcher=dict(fixed=False),
)
