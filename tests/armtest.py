"""Shared test helpers (importable as `armtest`: pytest puts tests/ on sys.path)."""
import argparse
import hashlib
import shutil
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


def put_in_cache(cache: Path, repo: str, files: dict, ref: str = "main") -> str:
    """Files {name: source path} as one snapshot of `repo` in a huggingface_hub cache (the folder HF_HUB_CACHE
    names); `ref` points at it. Returns the snapshot's commit hash."""
    commit = hashlib.sha1(f"{repo}{ref}{sorted(files)}".encode()).hexdigest()
    d = cache / f"models--{repo.replace('/', '--')}"
    (d / "refs").mkdir(parents=True, exist_ok=True)
    (d / "refs" / ref).write_text(commit)
    snap = d / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        shutil.copyfile(src, snap / name)
    return commit
