# The embedded default's student: the tiny base model, short schedule.
_base_ = './conditional-detr_tiny-base_synth.py'
