"""armvision: autoregressive pretraining of Vision Mamba (ARM)."""
__version__ = "0.1.0"
