"""Training data: WIDER-format sources mixed with weights, and the augmentation small face detectors need."""
