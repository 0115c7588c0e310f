"""`armvision eval`: accuracy on a generated ImageFolder equals the accuracy computed by hand from the logits."""
import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import armvision
from armtest import FIXTURES
from armvision.cli import main
from armvision.errors import CheckpointError, DataError
from armvision.eval.evaluate import append_json, evaluate_checkpoint
from armvision.eval.metrics import ClassificationMeter, accuracy, topk_correct
from armvision.eval.robustness import class_mask, wnid_to_index

REFERENCE = str(FIXTURES / "reference_finetune_checkpoint.pth")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def make_folder(root, classes, per_class=4, size=36, seed=0):
    """Tiny PNGs: class-tinted noise. 36 px = int(32 / 0.875), so the eval transform is a 2-px center crop."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            px = rng.integers(0, 256, (size, size, 3)).astype(np.float64)
            px[..., c % 3] = 0.5 * px[..., c % 3] + 127
            Image.fromarray(px.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def hand_tensors(root, classes):
    """The images as the eval transform should see them, built by hand: crop 32 of 36, scale, normalise."""
    xs, ys = [], []
    for c, name in enumerate(sorted(classes)):
        for f in sorted((root / name).iterdir()):
            a = np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)[2:34, 2:34] / 255.0
            xs.append(torch.tensor(((a - MEAN) / STD).transpose(2, 0, 1), dtype=torch.float32))
            ys.append(c)
    return torch.stack(xs), torch.tensor(ys)


def tiny_classifier(seed, num_classes=3, **kw):
    torch.manual_seed(seed)
    model = armvision.create_classifier("tiny", embed_dim=32, depth=2, img_size=32, patch_size=8,
                                        num_classes=num_classes, **kw)
    with torch.no_grad():  # a head that is not ~0 so that the predictions differ between images
        model.head.weight.normal_(0, 1.0)
    return model.eval()


def hand_metrics(model, x, y):
    with torch.no_grad():
        logits = model(x)
    return {"top1": 100.0 * (logits.argmax(1) == y).sum().item() / len(y),
            "loss": F.cross_entropy(logits, y).item(), "num_images": len(y)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    classes = ["cat", "dog", "fox"]
    root = make_folder(tmp / "data" / "val", classes)
    model, ema = tiny_classifier(0), tiny_classifier(1)
    ckpt = tmp / "ckpt.pth"
    torch.save({"model_config": dataclasses.asdict(model.config), "model": model.state_dict(),
                "ema": ema.state_dict(), "epoch": 3}, ckpt)
    x, y = hand_tensors(root, classes)
    return dict(tmp=tmp, root=root, data=tmp / "data", ckpt=ckpt, model=model, ema=ema, x=x, y=y)


def check(metrics, want):
    assert metrics["num_images"] == want["num_images"]
    assert metrics["top1"] == pytest.approx(want["top1"], abs=1e-9)
    assert metrics["top5"] == pytest.approx(100.0)  # 3 classes: top-5 is clipped to top-3
    assert metrics["loss"] == pytest.approx(want["loss"], rel=1e-4)


def test_eval_function_matches_hand_accuracy(setup):
    want = hand_metrics(setup["model"], setup["x"], setup["y"])
    assert 0 < want["top1"] < 100  # the oracle is informative
    rec = evaluate_checkpoint(setup["ckpt"], data=str(setup["data"]), batch_size=5, progress=False)
    check(rec["metrics"], want)
    assert rec["img_size"] == 32 and rec["dataset"] == "folder" and rec["data"].endswith("val")
    rec_ema = evaluate_checkpoint(setup["ckpt"], data=str(setup["root"]), ema=True, batch_size=7, progress=False)
    want_ema = hand_metrics(setup["ema"], setup["x"], setup["y"])
    check(rec_ema["metrics"], want_ema)


def test_eval_cli_prints_table_and_appends_json(setup, capsys):
    out = setup["tmp"] / "results.json"
    argv = ["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]), "--batch-size", "4",
            "--num-workers", "0", "--device", "cpu", "--output-json", str(out), "--no-progress",
            "--output", str(setup["tmp"] / "classes")]
    assert main(argv) == 0
    assert main(argv + ["--ema"]) == 0
    printed = capsys.readouterr().out
    records = json.loads(out.read_text())
    assert [r["weights"] for r in records] == ["model", "ema"]
    want = hand_metrics(setup["model"], setup["x"], setup["y"])
    check(records[0]["metrics"], want)
    assert f"{want['top1']:.2f}" in printed and "top1" in printed
    assert {"checkpoint", "dataset", "img_size", "date", "torch", "metrics"} <= set(records[0])


def test_eval_save_pretrained_dir_at_another_resolution(setup):
    """A save_pretrained directory, evaluated at 48 px (position embedding resampled) on 54-px images."""
    d = armvision.save_pretrained(setup["model"], setup["tmp"] / "pretrained")
    root = make_folder(setup["tmp"] / "big", ["a", "b", "c"], per_class=2, size=54, seed=1)
    rec = evaluate_checkpoint(d, data=str(root), img_size=48, progress=False)
    model48 = armvision.create_classifier("tiny", embed_dim=32, depth=2, img_size=48, patch_size=8, num_classes=3)
    armvision.load_checkpoint(model48, {"model": setup["model"].state_dict()})
    xs, ys = [], []
    for c, name in enumerate("abc"):
        for f in sorted((root / name).iterdir()):
            a = np.asarray(Image.open(f).convert("RGB"), dtype=np.float64)[3:51, 3:51] / 255.0
            xs.append(torch.tensor(((a - MEAN) / STD).transpose(2, 0, 1), dtype=torch.float32))
            ys.append(c)
    check(rec["metrics"], hand_metrics(model48.eval(), torch.stack(xs), torch.tensor(ys)))
    assert rec["img_size"] == 48


def test_eval_reference_checkpoint_infers_sizes(tmp_path):
    """A reference finetuning .pth (32 wide, depth 2, 5 classes, 224 px): sizes come from the tensor shapes."""
    expected = torch.load(REFERENCE.replace("checkpoint", "expected"), weights_only=True)
    from armvision.eval.evaluate import load_model_for_eval

    model, _ = load_model_for_eval(REFERENCE)
    with torch.no_grad():
        torch.testing.assert_close(model(expected["input"]), expected["logits"], atol=1e-4, rtol=1e-4)
    with pytest.raises(CheckpointError, match="--model base"):
        load_model_for_eval(REFERENCE, model_size="base")
    # reference finetuning files keep the EMA weights under "model_ema"
    ref = torch.load(REFERENCE, weights_only=False)
    ema_sd = {k: v.clone() for k, v in ref["model"].items()}
    ema_sd["head.bias"] += torch.arange(5.0)
    torch.save(dict(ref, model_ema=ema_sd), tmp_path / "ref_ema.pth")
    ema_model, _ = load_model_for_eval(tmp_path / "ref_ema.pth", ema=True)
    with torch.no_grad():
        torch.testing.assert_close(ema_model(expected["input"]), expected["logits"] + torch.arange(5.0),
                                   atol=1e-4, rtol=1e-4)
    classes = [f"c{i}" for i in range(5)]
    root = make_folder(tmp_path / "ref", classes, per_class=1, seed=2)
    rec = evaluate_checkpoint(REFERENCE, data=str(root), img_size=32, progress=False)  # 2x2 patches of 16 px
    m32 = armvision.create_classifier("tiny", embed_dim=32, depth=2, img_size=32, patch_size=16, num_classes=5)
    armvision.load_checkpoint(m32, REFERENCE)
    x, y = hand_tensors(root, classes)
    want = hand_metrics(m32.eval(), x, y)
    assert rec["metrics"]["top1"] == pytest.approx(want["top1"])
    assert rec["metrics"]["loss"] == pytest.approx(want["loss"], rel=1e-4)


def test_eval_imagenet_a_folder_restricts_logits(tmp_path):
    """A 1000-class model on an ImageNet-A-style folder: argmax among the 200 A classes, labels = mask positions."""
    model = tiny_classifier(3, num_classes=1000)
    ckpt = tmp_path / "in1k.pth"
    torch.save({"model_config": dataclasses.asdict(model.config), "model": model.state_dict()}, ckpt)
    wnids = ["n01498041", "n02051845", "n04507155"]  # stingray 6, pelican 144, umbrella 879
    root = make_folder(tmp_path / "imagenet-a", wnids, per_class=3, seed=4)
    x, y = hand_tensors(root, wnids)
    mask = class_mask("imagenet-a")
    with torch.no_grad():
        logits = model(x)[:, mask]  # (N, 200)
    labels = torch.tensor([mask.tolist().index(wnid_to_index()[wnids[c]]) for c in y])
    rec = evaluate_checkpoint(ckpt, data=str(root), dataset="imagenet-a", progress=False)
    m = rec["metrics"]
    assert m["top1"] == pytest.approx(100.0 * (logits.argmax(1) == labels).float().mean().item())
    top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    assert m["top5"] == pytest.approx(100.0 * top5)
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-4)


def test_eval_errors_are_one_clear_line(setup, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(missing), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "does not exist" in err
    junk = tmp_path / "junk.pth"
    junk.write_text("this is not a checkpoint")
    assert main(["eval", "--checkpoint", str(junk), "--data", str(setup["data"]), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(junk) in err
    with pytest.raises(DataError, match="does not exist"):
        evaluate_checkpoint(setup["ckpt"], data=str(missing), progress=False)
    with pytest.raises(CheckpointError):
        evaluate_checkpoint(junk, data=str(setup["data"]), progress=False)
    torch.manual_seed(0)
    pre = armvision.create_pretrainer("tiny", embed_dim=32, depth=2, decoder_embed_dim=32, decoder_depth=2,
                                      img_size=32, patch_size=8, cluster_size=2)
    pre_ckpt = tmp_path / "pre.pth"
    torch.save({"model_config": dataclasses.asdict(pre.config), "model": pre.state_dict()}, pre_ckpt)
    with pytest.raises(CheckpointError, match="not a classifier"):
        evaluate_checkpoint(pre_ckpt, data=str(setup["data"]), progress=False)
    with pytest.raises(CheckpointError, match="no 'ema'|no 'model_ema'|EMA"):
        evaluate_checkpoint(pre_ckpt, ema=True, progress=False)


def test_append_json_keeps_previous_records(tmp_path):
    out = tmp_path / "r.json"
    append_json(out, {"a": 1})
    append_json(out, {"a": 2})
    assert json.loads(out.read_text()) == [{"a": 1}, {"a": 2}]


def test_topk_clips_and_meter_streams():
    torch.manual_seed(0)
    logits, target = torch.randn(50, 3), torch.randint(0, 3, (50,))
    assert topk_correct(logits, target, (1, 5)) == [int((logits.argmax(1) == target).sum()), 50]
    meter = ClassificationMeter((1, 2))
    for i in range(0, 50, 7):  # uneven batches
        meter.update(logits[i:i + 7], target[i:i + 7])
    m = meter.compute()
    top1, top2 = accuracy(logits, target, (1, 2))
    assert m["top1"] == pytest.approx(top1) and m["top2"] == pytest.approx(top2) and m["num_images"] == 50
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)
