"""PtychoNN: models, training corpus, continual training, ONNX export and model registry.

Importing this package does not import torch; the submodules that need it do.
"""
