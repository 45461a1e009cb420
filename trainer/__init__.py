"""Training side of TeluCodec: the Accelerate loop, checkpoints, validation, W&B, export.

Everything about precision, ranks and devices lives here; :mod:`codec` stays plain PyTorch.
"""
