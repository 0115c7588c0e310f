"""Shared test helpers (importable as `armtest`: pytest puts tests/ on sys.path)."""
import argparse
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference"  # in the repo: see its README.md


def load_fixture(name):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(FIXTURES / name, weights_only=True)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    assert FIXTURES.is_dir(), f"reference fixtures missing at {FIXTURES}"
    return FIXTURES


def tiny_pretrainer(**kw):
    import armvision

    cfg = dict(embed_dim=32, depth=4, decoder_embed_dim=32, img_size=32, patch_size=8, cluster_size=2)
    cfg.update(kw)
    return armvision.create_pretrainer("tiny", **cfg)


def tiny_classifier(**kw):
    import armvision

    cfg = dict(embed_dim=32, depth=2, img_size=32, patch_size=8, num_classes=3)
    cfg.update(kw)
    return armvision.create_classifier("tiny", **cfg)


def fit_steps(model, inputs, steps: int, lr: float) -> list:
    """`steps` AdamW steps of `model(inputs).loss` on one fixed batch; the losses before each step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(inputs).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
