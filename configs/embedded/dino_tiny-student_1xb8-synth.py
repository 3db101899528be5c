# The embedded default's DINO student: the tiny base model, short schedule.
_base_ = './dino_tiny-base_synth.py'
