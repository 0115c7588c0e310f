"""README's Python blocks run, so that none can go stale. Each block runs as written in a fresh namespace, in a
temp folder holding small stand-ins for the files it names, with three textual stand-ins applied (tiny widths
instead of the base model's, which would be slow); blocks that need the network (the Hub) are skipped, and
blocks that continue an earlier example get that example's names from a prelude of their section."""
import argparse
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import armvision

README = Path(__file__).resolve().parents[1] / "README.md"
NETWORK = ("hf-hub:", "pretrained=True", "push_to_hub(", "torch.hub.load(")
SMALL = dict(embed_dim=32, depth=2)
STAND_INS = [  # (as written, what runs): each must occur in the README
    ('create_classifier("base"', 'create_classifier("base", embed_dim=32, depth=2'),
    ('create_pretrainer("base")', 'create_pretrainer("base", embed_dim=32, depth=2, decoder_embed_dim=32)'),
    ('timm.create_model("arm_base"', 'timm.create_model("arm_base", embed_dim=32'),
    ('Predictor.load("pets.onnx")', 'Predictor.load("runs/ft/checkpoint-best.pth")'),  # (export's tests cover ONNX)
]
PRELUDES = {  # section -> the names its blocks continue from
    "Prediction": "import armvision\n",
    "Export (torch.export, ONNX, torch.compile)": "import torch, armvision\n"
    "model = armvision.create_classifier('tiny', embed_dim=32, depth=2, num_classes=10).eval()\n"
    "x = torch.randn(2, 3, 224, 224)\n",
}


def python_blocks():
    """[(line, section, code)] of every ```python block (indented ones in lists too), dedented."""
    blocks, section, lines = [], "", README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        m = re.match(r"^(\s*)```python\s*$", lines[i])
        if m:
            indent, start, body = len(m.group(1)), i + 1, []
            i += 1
            while not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:])
                i += 1
            blocks.append((start, section, "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_its_examples_and_the_stand_ins_still_match():
    text = README.read_text()
    for written, _ in STAND_INS:
        assert written in text, f"stand-in for {written!r} matches nothing in README.md: update STAND_INS"
    offline = [b for b in BLOCKS if not any(n in b[2] for n in NETWORK)]
    assert len(BLOCKS) >= 6 and len(BLOCKS) - len(offline) == 1  # only the Hub block needs the network


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """A temp folder with the files README's blocks name, made by small models of the stand-in widths."""
    torch.manual_seed(0)
    cls = armvision.create_classifier("base", num_classes=1000, **SMALL)
    pre = armvision.create_pretrainer("base", decoder_embed_dim=32, **SMALL)
    args = argparse.Namespace(model="arm_base", input_size=224)
    torch.save({"model": cls.state_dict(), "model_ema": cls.state_dict(), "args": args}, tmp_path / "arm_base_finetuned.pth")
    torch.save({"model": pre.state_dict(), "args": args}, tmp_path / "arm_base_pretrain.pth")
    armvision.save_pretrained(pre, tmp_path / "weights" / "arm-b-pt")
    finetuned = armvision.create_classifier("tiny", num_classes=3, **SMALL)  # a finetuning run's best checkpoint
    (tmp_path / "runs" / "ft").mkdir(parents=True)
    torch.save({"model": finetuned.state_dict(), "model_config": dataclasses.asdict(finetuned.config),
                "label_names": ["cat", "dog", "fox"]}, tmp_path / "runs" / "ft" / "checkpoint-best.pth")
    (tmp_path / "photos").mkdir()
    for name in ("cat.jpg", "photos/a.png", "photos/b.png"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("line,section,code", [b for b in BLOCKS if not any(n in b[2] for n in NETWORK)],
                         ids=lambda v: f"README.md:{v}" if isinstance(v, int) else "")
def test_block_runs(folder, line, section, code):
    for written, runs in STAND_INS:
        code = code.replace(written, runs)
    namespace = {"__name__": "__readme__"}
    exec(compile(PRELUDES.get(section, ""), "prelude", "exec"), namespace)
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
