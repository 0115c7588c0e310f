"""Per-class results of `armvision eval` (issue 23, item 1): class names from the checkpoint, per-class accuracy and
the confusion matrix (JSON + PNG) equal to what the logits say, folders matched to the model's classes by name."""
import dataclasses
import json

import pytest
import torch

from armvision.cli import main
from armvision.eval.evaluate import evaluate_checkpoint
from armvision.eval.metrics import PAD, ConfusionMatrix, topk_hits

from .test_evaluate import hand_tensors, make_folder, tiny_classifier

NAMES = ["bird", "cat", "dog"]


def _confusion_by_hand(model, x, y, k):
    with torch.no_grad():
        pred = model(x).argmax(1)
    m = [[0] * k for _ in range(k)]
    for t, p in zip(y.tolist(), pred.tolist()):
        m[t][p] += 1
    return m


def test_confusion_matrix_and_per_class_accuracy_files(tmp_path, capsys):
    model = tiny_classifier(0)
    ckpt = tmp_path / "run" / "checkpoint-best.pth"
    ckpt.parent.mkdir()
    torch.save({"model_config": dataclasses.asdict(model.config), "model": model.state_dict(),
                "label_names": NAMES}, ckpt)
    root = make_folder(tmp_path / "data" / "val", NAMES, per_class=5)
    x, y = hand_tensors(root, NAMES)
    want = _confusion_by_hand(model, x, y, 3)
    assert sum(want[i][i] for i in range(3)) not in (0, 15)  # the oracle is informative
    rec = evaluate_checkpoint(ckpt, data=str(tmp_path / "data"), batch_size=4, progress=False,
                              output=tmp_path / "report")
    body = json.loads((tmp_path / "report" / "per_class.json").read_text())
    assert body["confusion"]["counts"] == want and body["label_names"] == NAMES
    for i, row in enumerate(body["per_class"]):
        assert row["name"] == NAMES[i] and row["images"] == 5 and row["accuracy"] == pytest.approx(20.0 * want[i][i])
    assert rec["per_class"] == body["per_class"]
    assert (tmp_path / "report" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the command prints the names and where the files are; its default folder is named after the checkpoint
    out = tmp_path / "cwd"
    out.mkdir()
    import os

    cwd = os.getcwd()
    os.chdir(out)
    try:
        assert main(["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--no-progress",
                     "--num-workers", "0"]) == 0
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "per-class top-1" in printed and all(n in printed for n in NAMES)
    assert (out / "runs" / "eval" / "run-checkpoint-best" / "per_class.json").is_file()


def test_a_folder_is_matched_to_the_models_classes_by_name(tmp_path):
    """A val folder without 'bird': its classes cat and dog are the model's classes 1 and 2, not 0 and 1."""
    model = tiny_classifier(0)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model_config": dataclasses.asdict(model.config), "model": model.state_dict(),
                "label_names": NAMES}, ckpt)
    root = make_folder(tmp_path / "val", ["cat", "dog"], per_class=4)
    x, y = hand_tensors(root, ["cat", "dog"])
    with torch.no_grad():
        right = (model(x).argmax(1) == y + 1).float().mean().item() * 100
    rec = evaluate_checkpoint(ckpt, data=str(root), progress=False)
    assert rec["metrics"]["top1"] == pytest.approx(right)
    assert [r["images"] for r in rec["per_class"]] == [0, 4, 4] and rec["per_class"][0]["accuracy"] is None


def test_confusion_ignores_padding_and_topk_hits_match_a_plain_count():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [5.0, 0.0, 0.0]])
    target = torch.tensor([0, 2, 2, PAD])
    cm = ConfusionMatrix(3)
    cm.update(logits, target)
    assert cm.matrix() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert [c["images"] for c in cm.per_class()] == [1, 0, 2]
    plain = [sum(int(t in logits[i].topk(min(k, 3)).indices.tolist()) for i, t in enumerate(target.tolist()) if t != PAD)
             for k in (1, 2, 5)]
    assert topk_hits(logits, target, (1, 2, 5)).tolist() == plain == [2, 3, 3]
