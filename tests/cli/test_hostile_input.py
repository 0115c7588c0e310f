"""Issue 25 (2-5): a saved folder's config.json, a checkpoint's config and a --config file go through the same field
checks as flags, plus an up-front size check (no traceback, no 720 GB allocation, no hang); files that are not text,
YAML / JSON or a mapping; empty strings and zeros that cannot mean anything; class folders without a usable image;
NaN weights; and our own one-line messages (never PyTorch's advice to load a file unsafely)."""
import json
import os
import pickle
import time

import numpy as np
import pytest
import torch
from PIL import Image

import armvision
from armtest import tiny_classifier
from armvision.cli import main
from armvision.data import SafeImageFolder
from armvision.errors import CheckpointError, DataError

TINY = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--decoder-embed-dim", "16", "--decoder-depth", "2",
        "--img-size", "16", "--patch-size", "8", "--cluster-size", "1", "--num-workers", "0", "--no-progress",
        "--no-tensorboard", "--batch-size", "16", "--max-steps", "1"]
FT = ["--model", "tiny", "--embed-dim", "16", "--depth", "2", "--img-size", "16", "--patch-size", "8",
      "--num-workers", "0", "--no-progress", "--no-tensorboard", "--max-steps", "1", "--batch-size", "16"]
EVAL = ["--num-workers", "0", "--no-progress"]


def _fails(capsys, argv, *parts):
    """`armvision ARGV` ends with exit code 2 and one line on stderr holding `parts`, no traceback."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err)
    assert all(p in lines[0] for p in parts), lines[0]
    return lines[0]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = tiny_classifier(embed_dim=16, img_size=16, num_classes=10)
    return armvision.save_pretrained(model, tmp_path / "saved", model_card=False)


def _edit(folder, key=None, value=None, raw=None):
    path = folder / "config.json"
    if raw is not None:
        path.write_bytes(raw)
        return
    meta = json.loads(path.read_text())
    meta["model_config"][key] = value
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("key,value,raw,expect", [
    ("embed_dim", -5, None, "embed_dim=-5: must be >= 1"),
    ("embed_dim", 300000, None, "bytes"),  # 8 TB of weights: refused before anything is allocated
    ("depth", 10000000, None, "depth=10000000: must be <= 1024"),  # used to hang
    ("img_size", [16, 20], None, "not a multiple of the patch size"),
    ("patch_size", True, None, "patch_size=True is not a valid int"),
    ("kind", "vit", None, "kind='vit': choose one of"),
    ("bogus", 1, None, "unknown key 'bogus'"),
    ("num_classes", None, None, "num_classes is not set"),  # a valid finetuning plan, but weights need a head
    (None, None, b"[1, 2]", "expected a mapping"),
    (None, None, b"\xff\xfe{}", "not a text file"),
    (None, None, b'{"model_config": {', "not valid JSON"),
])
def test_a_saved_folders_config_json_is_checked_like_flags(saved, capsys, key, value, raw, expect):
    _edit(saved, key, value, raw)
    start = time.perf_counter()
    line = _fails(capsys, ["eval", "--checkpoint", str(saved), *EVAL], expect)
    assert str(saved) in line
    _fails(capsys, ["export", str(saved), str(saved.parent / "m.pt2")], expect)  # the same check in every command
    assert time.perf_counter() - start < 120 and not (saved.parent / "m.pt2").exists()


def test_a_number_as_text_in_config_json_is_read_as_a_flag_would_be(saved, capsys):
    _edit(saved, "embed_dim", "16")  # `--embed-dim 16` is text too; it used to end in a TypeError inside torch
    assert main(["eval", "--checkpoint", str(saved), *EVAL]) == 0


def test_a_checkpoints_model_config_is_checked_where_it_is_read(tmp_path, capsys):
    model = tiny_classifier(embed_dim=16, img_size=16, num_classes=10)
    cfg = {**{k: v for k, v in vars(model.config).items()}, "depth": 0}
    torch.save({"model": model.state_dict(), "model_config": cfg}, tmp_path / "c.pth")
    _fails(capsys, ["eval", "--checkpoint", str(tmp_path / "c.pth"), *EVAL], "c.pth: model_config: depth=0")


@pytest.mark.parametrize("content,expect", [
    (b"\xff\xfe\x00e\x00p\x00o\x00c\x00h\x00s", "not a text file"),
    (b"epochs: [1, 2\n", "not valid YAML"),
    (b"- 1\n- 2\n", "expected a mapping of option: value, got list"),
    (b"model:\n  d_state: -5\n", "model.d_state=-5: must be >= 1"),
])
def test_config_files_that_are_not_text_yaml_or_a_mapping(tmp_path, capsys, content, expect):
    (tmp_path / "run.yaml").write_bytes(content)
    line = _fails(capsys, ["pretrain", *TINY, "--config", str(tmp_path / "run.yaml"), "--output", str(tmp_path / "o")],
                  "run.yaml", expect)
    assert len(line) < 300 and not (tmp_path / "o").exists()
    if b"[1, 2" in content:
        assert "line 2" in line  # where the problem is


@pytest.mark.parametrize("argv,expect", [
    (["pretrain", *TINY, "--output", ""], "--output '': cannot be empty"),
    (["pretrain", *TINY, "--data", ""], "--data '': cannot be empty (leave it out for the embedded digits)"),
    (["pretrain", *TINY, "--resume", ""], "--resume '': cannot be empty"),
    (["finetune", *FT, "--init", ""], "--init '': cannot be empty (leave it out to train from scratch)"),
    (["finetune", *FT, "--num-classes", "0"], "--num-classes 0: a finetuned classifier needs at least one class"),
])
def test_empty_strings_and_zeros_that_mean_nothing_are_refused(tmp_path, capsys, monkeypatch, argv, expect):
    monkeypatch.chdir(tmp_path)
    _fails(capsys, argv, expect)
    assert not list(tmp_path.iterdir())  # nothing written in the current folder


def _image_folder(root, classes):
    rng = np.random.default_rng(0)
    for name, files in classes.items():
        (root / name).mkdir(parents=True)
        for f in files:
            if f.startswith("broken"):
                (root / name / f).write_bytes(b"not an image")
            else:
                Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / name / f)
    return root


def test_class_folders_without_a_usable_image_are_named_and_refused(tmp_path):
    root = _image_folder(tmp_path / "train", {"cat": ["0.png", "1.png"], "dog": ["0.png"], "empty": [],
                                              "ruined": ["broken0.png", "broken1.jpg"]})
    with pytest.raises(DataError, match=r"2 class folder\(s\) without a usable image \(empty, ruined\)"):
        SafeImageFolder(root)


def test_a_newline_in_a_file_name_keeps_one_line_per_file(tmp_path, caplog):
    root = _image_folder(tmp_path / "train", {"a": ["0.png", "broken\nname.png", "broken2.png"], "b": ["0.png"]})
    ds = SafeImageFolder(root)
    assert len(ds) == 2
    text = next(r.getMessage() for r in caplog.records if "skipping 2 unreadable" in r.getMessage())
    lines = text.splitlines()
    assert len(lines) == 3 and "broken\\nname.png" in lines[1] and "broken2.png" in lines[2], lines


def test_a_decompression_bomb_is_named_with_our_limit(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "train", {"a": ["0.png"], "b": ["0.png"]})
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(root / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2x this, before our own check
    ds = SafeImageFolder(root, max_pixels=500)
    (why,) = [r for p, r in ds.skipped if p.endswith("bomb.png")]
    assert why == "10,000 pixels, more than the limit of 500 (raise it with --max-image-pixels)"


def test_nan_weights_are_refused_by_eval_and_export(tmp_path, capsys):
    model = tiny_classifier(embed_dim=16, img_size=16, num_classes=10)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    armvision.save_pretrained(model, tmp_path / "nan", model_card=False)
    _fails(capsys, ["eval", "--checkpoint", str(tmp_path / "nan"), *EVAL], "NaN or infinite", "head.weight")
    _fails(capsys, ["export", str(tmp_path / "nan"), str(tmp_path / "m.pt2")], "NaN or infinite")
    assert not (tmp_path / "m.pt2").exists()
    from armvision.models.checkpoint import require_finite  # the check `predict` uses too

    with pytest.raises(CheckpointError, match="x.pth: 1 weight tensor"):
        require_finite({"a": torch.ones(2), "b": torch.tensor([1.0, float("inf")]), "i": torch.ones(2, dtype=int)},
                       "x.pth")
    require_finite(dict(tiny_classifier().named_parameters()), "fine.pth")


class _Payload:
    """A pickle that, loaded unsafely, would create a file: loaded safely, it must never run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_files_that_are_not_checkpoints_get_our_message_and_never_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    files = {"text.pth": b"hello\n", "random.pth": os.urandom(3000), "pickle.pth": pickle.dumps({"a": 1})}
    torch.save({"model": _Payload(str(marker))}, tmp_path / "code.pth")
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    for name in [*files, "code.pth"]:
        path = str(tmp_path / name)
        for argv in (["eval", "--checkpoint", path, *EVAL], ["convert", path, str(tmp_path / "out")],
                     ["pretrain", *TINY, "--resume", path, "--output", str(tmp_path / "run")]):
            line = _fails(capsys, argv, name)
            assert "weights_only" not in line and "will likely succeed" not in line, line
    assert not marker.exists()


def test_resume_with_another_width_names_the_shapes(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["pretrain", *TINY, "--output", out]) == 0
    wider = [*TINY, "--embed-dim", "32", "--max-steps", "2"]
    _fails(capsys, ["pretrain", *wider, "--resume", "auto", "--output", out],
           "does not fit this model", "differ in shape", "patch_embed.proj.weight (16, 3, 8, 8) in the checkpoint, "
           "(32, 3, 8, 8) in the model")


def test_no_tensorboard_is_not_named_in_the_summary(tmp_path, capsys):
    assert main(["pretrain", *TINY, "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "pretraining done" in out and "TensorBoard" not in out and not (tmp_path / "run" / "tb").exists()


def test_export_refuses_an_opset_it_cannot_write(saved, capsys):
    _fails(capsys, ["export", str(saved), str(saved.parent / "m.onnx"), "--opset", "3"], "--opset", "3", ">= 18")
    assert not (saved.parent / "m.onnx").exists()


def test_control_characters_in_values_keep_the_error_on_one_line(tmp_path, capsys):
    """Found by fuzzing: a value holding a carriage return or a newline split the one error line in two."""
    _fails(capsys, ["pretrain", *TINY, "--config", "\r", "--output", str(tmp_path / "o")], "--config \\r")
    _fails(capsys, ["pretrain", *TINY, "--output", str(tmp_path / "o"), "stray\nvalue"], "stray\\nvalue")
