# The embedded default's Deformable DETR student: the tiny base model, short schedule.
_base_ = './deformable-detr_tiny-base_synth.py'
