"""Frozen-feature evaluation: DINO k-NN, the BatchNorm-free linear probe, feature extraction and `armvision probe`."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import armvision
from armvision.cli import main
from armvision.errors import ConfigError, DataError
from armvision.eval.features import extract_features
from armvision.eval.probe import knn_accuracy, knn_classify, linear_probe, probe_checkpoint


def clusters(n, num_classes, dim, noise, seed):
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.eye(num_classes, dim)  # orthogonal class directions
    y = torch.arange(n) % num_classes
    return centers[y] + noise * torch.randn(n, dim, generator=g), y


def test_knn_votes_by_hand():
    """Votes are sum of exp(cos / T) over the k nearest neighbours, per class."""
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[2.0, 0.5]])
    votes = knn_classify(train, labels, query, k=2, temperature=0.5, num_classes=3)
    cos = F.normalize(query, dim=1) @ F.normalize(train, dim=1).T  # (1, 3): neighbours 0 and 2 are nearest
    want = torch.tensor([[math.exp(cos[0, 0] / 0.5), math.exp(cos[0, 2] / 0.5), 0.0]])
    torch.testing.assert_close(votes, want)


def test_knn_on_separable_features_is_100_percent():
    xtr, ytr = clusters(200, 10, 32, 0.3, seed=0)
    xte, yte = clusters(100, 10, 32, 0.3, seed=1)
    acc = knn_accuracy(xtr, ytr, xte, yte, k=20, temperature=0.07)
    assert acc["top1"] == 100.0 and acc["top5"] == 100.0
    # and it is not trivially 100: with shuffled train labels it drops to chance
    shuffled = ytr[torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))]
    assert knn_accuracy(xtr, shuffled, xte, yte)["top1"] < 40.0


def test_linear_probe_on_linearly_separable_features():
    torch.manual_seed(0)
    xtr, ytr = clusters(300, 5, 16, 0.5, seed=2)
    xte, yte = clusters(100, 5, 16, 0.5, seed=3)
    xtr, xte = xtr * 7 + 40, xte * 7 + 40  # badly scaled and offset: the standardisation must handle it
    acc = linear_probe(xtr, ytr, xte, yte, num_classes=5, epochs=30)
    assert acc["top1"] >= 99.0 and acc["train_top1"] >= 99.0
    # a probe that cannot learn (labels independent of the features) stays near chance on held-out data
    noise = linear_probe(torch.randn(300, 16), ytr, torch.randn(100, 16), yte, num_classes=5, epochs=30)
    assert noise["top1"] < 45.0


def tiny_pretrainer(seed=0):
    torch.manual_seed(seed)
    return armvision.create_pretrainer("tiny", embed_dim=32, depth=3, decoder_embed_dim=32, decoder_depth=3,
                                       img_size=32, patch_size=8, cluster_size=2).eval()


def test_extract_features_layers_and_pooling():
    model = tiny_pretrainer()
    torch.manual_seed(1)
    imgs, labels = torch.randn(6, 3, 32, 32), torch.arange(6)
    loader = DataLoader(TensorDataset(imgs, labels), batch_size=4)
    feats, ys = extract_features(model, loader, layer=2)
    with torch.no_grad():
        tokens = model.encoder_outputs(imgs, layers=[2])[0]  # (B, N, D)
    want = F.layer_norm(tokens, tokens.shape[-1:]).mean(1)
    torch.testing.assert_close(feats, want)
    assert ys.tolist() == labels.tolist() and feats.shape == (6, 32)
    last, _ = extract_features(model, loader)  # default: the last layer
    assert not torch.allclose(last, feats)
    # a classifier: pooled feature by default; with a layer, that block's tokens (the final norm is the identity
    # affine at init, so the hooked last block, layer-normed and mean-pooled, equals forward_tokens' mean)
    torch.manual_seed(2)
    clf = armvision.create_classifier("tiny", embed_dim=32, depth=2, img_size=32, patch_size=8, num_classes=4).eval()
    pooled, _ = extract_features(clf, loader)
    hooked, _ = extract_features(clf, loader, layer=2)
    with torch.no_grad():
        torch.testing.assert_close(pooled, clf.forward_pooled(imgs))
        torch.testing.assert_close(hooked, clf.forward_tokens(imgs).mean(1), atol=1e-5, rtol=1e-5)


def make_split(root, per_class, seed):
    """Two very different classes: reddish and bluish noise images (36 px)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(["blue", "red"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            px = rng.integers(0, 80, (36, 36, 3))
            px[..., 2 if c == 0 else 0] += 170
            Image.fromarray(px.astype(np.uint8)).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def pre_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    model = tiny_pretrainer()
    path = tmp / "pre.pth"
    torch.save({"model_config": dataclasses.asdict(model.config), "model": model.state_dict()}, path)
    make_split(tmp / "data" / "train", 8, seed=0)
    make_split(tmp / "data" / "val", 4, seed=1)
    return tmp, path


def test_probe_cli_on_imagefolder(pre_ckpt, capsys):
    tmp, ckpt = pre_ckpt
    out = tmp / "probe.json"
    argv = ["probe", "--checkpoint", str(ckpt), "--data", str(tmp / "data"), "--knn-k", "5", "--epochs", "20",
            "--batch-size", "8", "--num-workers", "0", "--device", "cpu", "--output-json", str(out), "--no-progress"]
    assert main(argv) == 0
    rec = json.loads(out.read_text())[-1]
    assert rec["num_train"] == 16 and rec["num_val"] == 8 and rec["feature_dim"] == 32 and rec["layer"] == 3
    assert rec["knn"]["top1"] == 100.0 and rec["linear"]["top1"] == 100.0  # red vs blue: trivially separable
    printed = capsys.readouterr().out
    assert "k-NN k=5" in printed and "linear 20 ep" in printed


def test_probe_embedded_digits_default(pre_ckpt):
    _, ckpt = pre_ckpt
    rec = probe_checkpoint(str(ckpt), layer=1, max_images=120, epochs=10, batch_size=60, progress=False)
    assert rec["data"] == "embedded:digits" and rec["num_train"] == 120 and rec["num_val"] == 120
    assert rec["layer"] == 1
    for proto in ("knn", "linear"):  # random features of real digits: far above the 10 % of chance
        assert 25.0 < rec[proto]["top1"] <= 100.0 and rec[proto]["top5"] >= rec[proto]["top1"]


def test_probe_errors(pre_ckpt, tmp_path, capsys):
    _, ckpt = pre_ckpt
    with pytest.raises(ConfigError, match="--layer 7"):
        probe_checkpoint(str(ckpt), layer=7, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        probe_checkpoint(str(ckpt), data=str(tmp_path / "missing"), progress=False)
    make_split(tmp_path / "odd" / "train", 2, seed=0)
    make_split(tmp_path / "odd" / "val", 2, seed=1)
    for f in (tmp_path / "odd" / "val" / "red").iterdir():
        f.unlink()
    (tmp_path / "odd" / "val" / "red").rmdir()
    with pytest.raises(DataError, match="different class folders"):
        probe_checkpoint(str(ckpt), data=str(tmp_path / "odd"), progress=False)
    assert main(["probe", "--checkpoint", str(tmp_path / "none.pth"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.pth" in err
