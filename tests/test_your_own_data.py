"""The user's path with their own data (issue 23), played from README.md itself: the commands of its "Your own data"
section, exactly as written there, on a generated folder of photos and a generated ImageFolder. Pretraining on a
flat folder, finetuning with --init and no architecture flags, predicting with class names, exporting to ONNX with
the class names in its metadata, and onnxruntime predicting the same; no third-party warning on the way."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
CLASSES = ["bird", "cat", "dog"]
ARCH_FLAGS = ("--model", "--embed-dim", "--depth", "--img-size", "--patch-size")


def readme_commands(text: str) -> list[list[str]]:
    """The `armvision` commands of the first bash block after "## Your own data" (continuation lines joined,
    comments dropped)."""
    section = text.split("\n## Your own data\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split("#", 1)[0].strip() for line in joined.splitlines()]
    return [shlex.split(line) for line in lines if line]


def make_data(root: Path, seed: int = 0) -> None:
    """photos/: 48 unlabelled 40-px images in nested folders; pets/{train,val}/<class>/: class-tinted noise."""
    rng = np.random.default_rng(seed)

    def image(c):
        px = rng.integers(0, 256, (40, 40, 3)).astype(np.float64)
        px[..., c] = 0.4 * px[..., c] + 150  # each class has its own tint
        return Image.fromarray(px.astype(np.uint8))

    for i in range(48):
        folder = root / "photos" / ("holiday" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        image(i % 3).save(folder / f"img{i:03d}.png")
    for split, n in (("train", 16), ("val", 4)):
        for c, name in enumerate(CLASSES):
            (root / "pets" / split / name).mkdir(parents=True)
            for i in range(n):
                image(c).save(root / "pets" / split / name / f"{i}.png")


@pytest.mark.slow
def test_the_readme_section_runs_as_written(tmp_path):
    commands = readme_commands(README.read_text())
    assert [c[1] for c in commands] == ["pretrain", "finetune", "eval", "predict", "export", "predict"]
    finetune = commands[1]
    assert "--init" in finetune and not set(ARCH_FLAGS) & set(finetune)  # the checkpoint says what to build
    make_data(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = []
    for argv in commands:
        assert argv[0] == "armvision"
        p = subprocess.run([sys.executable, "-m", "armvision.cli", *argv[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{shlex.join(argv)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
        assert "Warning:" not in p.stderr and "warn(" not in p.stderr, p.stderr  # nothing from third parties
        outputs.append(p.stdout)
    eval_out, by_checkpoint, by_onnx = outputs[2], json.loads(outputs[3]), json.loads(outputs[5])
    assert all(name in eval_out for name in CLASSES)  # per-class accuracy by name
    assert (tmp_path / "runs" / "my-eval" / "confusion.png").is_file()
    assert len(by_checkpoint) == 12
    for a, b in zip(by_checkpoint, by_onnx):
        assert a["image"] == b["image"]
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert {p["label"] for p in a["predictions"]} <= set(CLASSES)
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-5)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "pets.onnx")).metadata_props}
    assert json.loads(meta["label_names"]) == CLASSES
