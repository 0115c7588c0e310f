"""`armvision predict` and `armvision.predict` (issue 23, item 1): class names from every kind of source, the
probabilities the model gives through its own transform, folders and globs, the ONNX file predicting the same, and
one clear line for each mistake."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import armvision
from armtest import tiny_classifier, tiny_pretrainer
from armvision.cli import main
from armvision.data import eval_transform
from armvision.deploy.predict import Predictor, find_images, predict
from armvision.errors import CheckpointError, DataError

NAMES = ["bird", "cat", "dog"]


def _images(root, n=5, size=40, seed=0):
    rng = np.random.default_rng(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + 3 * i, 3), dtype=np.uint8)).save(
            root / ("sub" if i % 2 else "") / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = tiny_classifier()
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)  # predictions that differ between images
    cfg = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop_pct": 0.8}  # its own transform
    ckpt = tmp / "ckpt.pth"
    torch.save({"model": model.state_dict(), "model_config": dataclasses.asdict(model.config), "config": cfg,
                "label_names": NAMES}, ckpt)
    return dict(tmp=tmp, model=model.eval(), ckpt=ckpt, cfg=cfg, imgs=_images(tmp / "imgs"))


def _by_hand(setup, path):
    tf = eval_transform(32, setup["cfg"]["crop_pct"], setup["cfg"]["mean"], setup["cfg"]["std"])
    with torch.no_grad():
        return torch.softmax(setup["model"](tf(Image.open(path).convert("RGB"))[None]), dim=1)[0]


def test_predict_gives_the_models_probabilities_with_class_names(setup):
    preds = predict(setup["ckpt"], [setup["imgs"]], top_k=2, batch_size=2)
    assert [os.path.basename(p.image) for p in preds] == ["0.png", "2.png", "4.png", "1.png", "3.png"]
    for p in preds:
        want = _by_hand(setup, p.image)  # the transform of the checkpoint's config: 40 / 0.8 -> crop 32
        top = want.topk(2)
        assert p.indices == top.indices.tolist() and p.labels == [NAMES[i] for i in top.indices]
        assert p.probabilities == pytest.approx(top.values.tolist(), abs=1e-6)
    assert len({tuple(p.labels) for p in preds}) > 1  # the oracle is informative
    # a glob and a file give the same, in the order given; each file once
    again = predict(setup["ckpt"], [str(setup["imgs"] / "sub" / "*.png"), str(setup["imgs"] / "0.png"),
                                     str(setup["imgs"] / "0.png")], top_k=3)
    assert [os.path.basename(p.image) for p in again] == ["1.png", "3.png", "0.png"]
    assert sorted(again[0].labels) == NAMES and sum(again[0].probabilities) == pytest.approx(1.0)


def test_cli_table_json_and_bad_images(setup, capsys, tmp_path):
    bad = tmp_path / "imgs"
    bad.mkdir()
    Image.open(setup["imgs"] / "0.png").save(bad / "good.png")
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["predict", "--checkpoint", str(setup["ckpt"]), str(bad), "--top-k", "1", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "broken.jpg" in err and err.count("\n") == 1  # one warning line
    assert "top-1" in out and any(n in out.splitlines()[-1] for n in NAMES) and "%" in out
    assert main(["predict", "--checkpoint", str(setup["ckpt"]), str(bad), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["image"].endswith("broken.jpg") and "error" in rows[0]
    assert [r["label"] for r in rows[1]["predictions"]] == [NAMES[i] for i in _by_hand(setup, bad / "good.png")
                                                            .argsort(descending=True).tolist()]
    # mistakes: one line, exit 2
    for argv, named in ((["--checkpoint", str(setup["ckpt"]), str(tmp_path / "none.png")], "none.png"),
                        (["--checkpoint", str(setup["ckpt"]), str(tmp_path / "*.gif")], "*.gif"),
                        (["--checkpoint", str(tmp_path / "nope.pth"), str(bad)], "nope.pth"),
                        (["--checkpoint", str(setup["ckpt"]), str(bad / "broken.jpg")], "broken.jpg")):
        assert main(["predict", *argv, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert named in err[-1] and err[-1].startswith("armvision predict: error:"), err


def test_onnx_file_predicts_the_same_with_its_metadata(setup, tmp_path):
    import onnx

    onnx_path = tmp_path / "pets.onnx"
    armvision.deploy.export_checkpoint(setup["ckpt"], onnx_path)
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(meta["label_names"]) == NAMES
    assert json.loads(meta["armvision_preprocess"])["mean"] == setup["cfg"]["mean"]
    a, b = predict(setup["ckpt"], [setup["imgs"]], top_k=3), predict(onnx_path, [setup["imgs"]], top_k=3)
    assert [p.labels for p in a] == [p.labels for p in b]
    for x, y in zip(a, b):
        assert x.probabilities == pytest.approx(y.probabilities, abs=1e-5)
    assert Predictor.load(onnx_path).label_names == NAMES


def test_folders_of_saved_models_keep_their_names(setup, tmp_path):
    out = tmp_path / "conv"
    main(["convert", str(setup["ckpt"]), str(out)])
    assert json.loads((out / "config.json").read_text())["label_names"] == NAMES
    assert "| class names | bird, cat, dog" in (out / "README.md").read_text()
    assert predict(out, [setup["imgs"] / "0.png"], top_k=1)[0].labels[0] in NAMES
    armvision.save_pretrained(setup["model"], tmp_path / "saved", label_names=["x", "y", "z"])
    assert Predictor.load(tmp_path / "saved").label_names == ["x", "y", "z"]


def test_models_without_names_and_models_that_cannot_predict(setup, tmp_path):
    torch.manual_seed(1)
    big = tiny_classifier(num_classes=1000)
    torch.save({"model": big.state_dict(), "model_config": dataclasses.asdict(big.config)}, tmp_path / "in1k.pth")
    names = Predictor.load(tmp_path / "in1k.pth").label_names
    assert names[0] == "tench, Tinca tinca" and names[999].startswith("toilet tissue")  # timm's ImageNetInfo
    small = tiny_classifier(num_classes=4)
    torch.save({"model": small.state_dict(), "model_config": dataclasses.asdict(small.config)}, tmp_path / "c4.pth")
    assert Predictor.load(tmp_path / "c4.pth").label_names == ["0", "1", "2", "3"]
    sd = dict(setup["model"].state_dict())
    sd["layers.1.mixer.D"] = sd["layers.1.mixer.D"] * float("nan")
    torch.save({"model": sd, "model_config": dataclasses.asdict(setup["model"].config)}, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="NaN or infinite values .*layers.1.mixer.D"):
        Predictor.load(tmp_path / "nan.pth")
    pre = tiny_pretrainer()
    torch.save({"model": pre.state_dict(), "model_config": dataclasses.asdict(pre.config)}, tmp_path / "pre.pth")
    with pytest.raises(CheckpointError, match="not a classifier"):
        Predictor.load(tmp_path / "pre.pth")
    with pytest.raises(DataError, match="holds no image files"):
        find_images([tmp_path])  # .pth files only


def test_hub_id_offline_from_the_cache(setup, tmp_path):
    """hf-hub:owner/name: the save_pretrained files in a huggingface_hub cache, read offline in a fresh process."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("hub_tests", Path(__file__).parents[1] / "models" / "test_hub.py")
    hub_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub_tests)  # its put_in_cache lays out a real huggingface_hub cache
    put_in_cache = hub_tests.put_in_cache
    saved = armvision.save_pretrained(setup["model"], tmp_path / "saved", label_names=NAMES)
    put_in_cache(tmp_path / "hf" / "hub", "me/pets", {n: saved / n for n in ("config.json", "model.safetensors")})
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "armvision.cli", "predict", "--checkpoint", "hf-hub:me/pets",
                        str(setup["imgs"] / "0.png"), "--json", "--top-k", "3"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    want = _by_hand({**setup, "cfg": {"crop_pct": 0.875, "mean": [0.485, 0.456, 0.406],
                                      "std": [0.229, 0.224, 0.225]}}, setup["imgs"] / "0.png")
    assert [r["label"] for r in rows[0]["predictions"]] == [NAMES[i] for i in want.argsort(descending=True)]
