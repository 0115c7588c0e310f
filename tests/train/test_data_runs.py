"""Training on the new kinds of --data (issue 23, items 5 and 6): pretraining on a folder of unlabelled images with
a validation loss, finetuning and evaluating on webdataset shards and on a saved Hugging Face dataset."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from armvision.data import build_dataset, eval_transform
from armvision.eval.evaluate import evaluate_checkpoint
from armvision.train.checkpoint import load_file
from armvision.train.config import FinetuneConfig, PretrainConfig, config_from_dict
from armvision.train.distributed import DistInfo
from armvision.train.finetune import train_finetune
from armvision.train.pretrain import make_val_loss, pretrain_sets, train_pretrain

from ..data.test_sources import write_shards

TINY_PT = dict(model="tiny", embed_dim=16, depth=2, decoder_embed_dim=16, decoder_depth=1, img_size=16, patch_size=8,
               cluster_size=1, batch_size=8, epochs=2, warmup_epochs=0.5, num_workers=0, progress=False,
               tensorboard=False, log_every=1)
TINY_FT = dict(model="tiny", embed_dim=16, depth=2, img_size=16, patch_size=8, batch_size=8, epochs=2, num_workers=0,
               progress=False, tensorboard=False, log_every=1, mixup=0, cutmix=0, auto_augment=None, reprob=0)


def _pt(**kw):  # the flat form (model knobs beside training knobs), as a YAML file or the flags give it
    return config_from_dict(PretrainConfig, {**TINY_PT, **kw})


def _ft(**kw):
    return config_from_dict(FinetuneConfig, {**TINY_FT, **kw})


def _lines(out, kind):
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _photos(root, n):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_pretrain_on_a_flat_folder_with_and_without_validation(tmp_path):
    photos = _photos(tmp_path / "photos", 24)
    s = train_pretrain(_pt(data=str(photos), output=str(tmp_path / "a")))
    assert s["step"] == 6 and not _lines(tmp_path / "a", "val")  # no validation images: no validation loss
    val = _photos(tmp_path / "held_out", 10)
    cfg = _pt(data=str(photos), val_data=str(val), output=str(tmp_path / "b"))
    train_pretrain(cfg)
    lines = _lines(tmp_path / "b", "val")
    assert [r["epoch"] for r in lines] == [1, 2] and all(r["val_loss"] > 0 for r in lines)
    # the validation loss is a function of the weights only (masks and views drawn from the seed)
    from armvision.models import load_model

    model, _ = load_model(str(tmp_path / "b" / "checkpoint-last.pth"))
    _, val_set = pretrain_sets(cfg)
    evaluate = make_val_loss(cfg, val_set, DistInfo())
    with torch.no_grad():
        assert evaluate(model.eval(), None) == evaluate(model.eval(), None) == {"val_loss": lines[-1]["val_loss"]}


def test_finetune_and_eval_on_webdataset_shards(tmp_path):
    data = tmp_path / "shards"
    write_shards(data / "train", 3, 8)
    write_shards(data / "val", 1, 6, start=100)
    (data / "classes.txt").write_text("ant\nbee\ncat\n")
    s = train_finetune(_ft(data=str(data), output=str(tmp_path / "ft")))
    assert s["step"] == 6 and [r["epoch"] for r in _lines(tmp_path / "ft", "val")] == [1, 2]
    ck = load_file(tmp_path / "ft" / "checkpoint-best.pth")
    assert ck["label_names"] == ["ant", "bee", "cat"]
    rec = evaluate_checkpoint(tmp_path / "ft" / "checkpoint-best.pth", data=str(data), progress=False)
    assert rec["metrics"]["num_images"] == 6 and [r["name"] for r in rec["per_class"]] == ["ant", "bee", "cat"]
    assert rec["metrics"]["top1"] == pytest.approx(ck["metrics"]["acc1"])


def test_pretrain_and_finetune_on_a_saved_hugging_face_dataset(tmp_path):
    pytest.importorskip("datasets")
    from ..data.test_hf import save_hf

    data = save_hf(tmp_path / "hf", n_train=16, n_val=6)
    train_pretrain(_pt(data=str(data), output=str(tmp_path / "pt")))
    assert len(_lines(tmp_path / "pt", "val")) == 2  # its validation split gives a validation loss
    s = train_finetune(_ft(data=str(data), init=str(tmp_path / "pt" / "checkpoint-last.pth"), label_fraction=0.5,
                           output=str(tmp_path / "ft")))
    assert s["step"] == 2 and load_file(tmp_path / "ft" / "checkpoint-last.pth")["label_names"] == ["ant", "bee", "cat"]
    assert len(build_dataset(str(data), "val", eval_transform(16))) == 6
