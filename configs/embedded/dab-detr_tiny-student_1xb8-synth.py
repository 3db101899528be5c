# The embedded default's DAB-DETR student: the tiny base model, short schedule.
_base_ = './dab-detr_tiny-base_synth.py'
