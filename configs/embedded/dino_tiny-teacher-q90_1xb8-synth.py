# The embedded default's DINO teacher with 90 queries, three times the 30 of the tiny students:
# the tiny counterpart of mmdet's DINO (900 queries) teaching a Deformable DETR (300), for D3ETR
# across query counts (configs/d3etr/d3etr_tiny-dino-t_tiny-deformable-s_1xb8-synth.py).
_base_ = './dino_tiny-teacher_1xb8-synth.py'

model = dict(num_queries=90)
