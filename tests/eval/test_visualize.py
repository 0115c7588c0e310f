"""`armvision visualize`: un-normalisation, per-cluster loss map, the PNG and its panels, loading and errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

import armvision
from armvision.cli import main
from armvision.errors import CheckpointError, DataError
from armvision.eval.visualize import PANELS, cluster_loss_map, load_images, load_pretrainer, reconstruct, visualize


def _tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(embed_dim=32, depth=4, decoder_embed_dim=32, img_size=32, patch_size=8, cluster_size=2)
    cfg.update(kw)
    return armvision.create_pretrainer("tiny", **cfg).eval()  # 4x4 patches, 2x2 clusters of 2x2 patches


@pytest.mark.parametrize("target", ["norm_pixel", "pixel"])
def test_reconstruct_of_the_target_is_the_input(target):
    model = _tiny(target=target, ordering="column")
    imgs = torch.randn(2, 3, 32, 32) * 2 + 0.5
    with torch.no_grad():
        out = model(imgs)
        assert torch.allclose(reconstruct(model, imgs, out.target), imgs, atol=1e-4)
        # a zero prediction of normalised pixels gives each target patch its own mean; cluster 1 stays the input
        flat = reconstruct(model, imgs, torch.zeros_like(out.pred))
    first = int(model.cluster_order[0])  # column order: cluster 0 (top-left) first
    assert first == 0
    assert torch.equal(flat[..., :16, :16], imgs[..., :16, :16])
    if target == "norm_pixel":
        patch = imgs[0, :, 16:24, 0:8]  # a patch of cluster 2 (bottom-left in column order)
        assert torch.allclose(flat[0, :, 16:24, 0:8], patch.mean().expand_as(patch), atol=1e-5)


def test_cluster_loss_map_places_clusters_by_prediction_order():
    model = _tiny(ordering="column")  # order of clusters: 0, 2, 1, 3 (raster ids of the 2x2 cluster grid)
    loss = torch.tensor([[1.0, 1.0, 3.0, 3.0, 10.0, 20.0, 30.0, 40.0, 5.0, 5.0, 5.0, 5.0]])  # (1, T=3 clusters x 4)
    grid = cluster_loss_map(model, loss)
    assert grid.shape == (1, 2, 2) and torch.isnan(grid[0, 0, 0])
    assert grid[0, 1, 0] == 2.0  # 2nd predicted = raster 2 (bottom-left)
    assert grid[0, 0, 1] == 25.0  # 3rd predicted = raster 1 (top-right)
    assert grid[0, 1, 1] == 5.0


def test_visualize_writes_one_png_per_image_with_five_panels(tmp_path):
    model = _tiny()
    imgs = torch.randn(3, 3, 32, 32)
    res = visualize(model, imgs, ["a.png", "b", "c"], tmp_path)
    assert res.panels == len(PANELS) == 5 and len(res.paths) == 3 and len(res.losses) == 3
    with torch.no_grad():
        expected = model(imgs).loss_per_patch.mean(-1)
    assert res.losses == pytest.approx(expected.tolist(), rel=1e-5)
    with Image.open(res.paths[0]) as im:
        assert im.format == "PNG"
        assert im.text["Description"].startswith("armvision visualize: 5 panels")
        assert im.size[0] > 3.5 * im.size[1]  # one row of five panels


def test_cli_on_embedded_data_from_a_training_checkpoint(tmp_path, capsys):
    model = _tiny()
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "model_config": dataclasses.asdict(model.config), "epoch": 1}, ckpt)
    out = tmp_path / "vis"
    assert main(["visualize", "--checkpoint", str(ckpt), "--num-images", "2", "--output", str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["00_digits_val_0_label4.png", "01_digits_val_1_label0.png"]
    assert "one row of 5 panels" in capsys.readouterr().out


def test_cli_with_image_files_and_a_save_pretrained_dir(tmp_path, capsys):
    model = _tiny()
    armvision.save_pretrained(model, tmp_path / "pre")
    img = tmp_path / "photo.png"  # lossless: the flat colour survives exactly
    Image.new("RGB", (50, 40), (200, 30, 30)).save(img)
    imgs, names = load_images([str(img)], 32)
    assert imgs.shape == (1, 3, 32, 32) and names == [str(img)]
    red = (200 / 255 - 0.485) / 0.229  # ImageNet-normalised red channel of a flat red picture
    assert imgs[0, 0].mean().item() == pytest.approx(red, abs=1e-4)
    out = tmp_path / "vis"
    assert main(["visualize", "--checkpoint", str(tmp_path / "pre"), "--images", str(img), "--output", str(out)]) == 0
    assert [p.name for p in out.glob("*.png")] == ["00_photo.png"]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["visualize", "--checkpoint", str(tmp_path / "pre"), "--images", str(bad)]) == 2
    assert "notes.png is not a readable image" in capsys.readouterr().err
    with pytest.raises(DataError, match="does not exist"):
        load_images([str(tmp_path / "missing.png")], 32)


def test_load_pretrainer_by_size_and_refuses_a_classifier(tmp_path):
    torch.manual_seed(0)
    ref = armvision.create_pretrainer("tiny", img_size=128, decoder_embed_dim=64)
    path = tmp_path / "ref.pth"
    torch.save({"model": ref.state_dict(), "epoch": 3}, path)  # reference layout: no model_config
    model = load_pretrainer(str(path))  # architecture read off the weights
    assert model.config.img_size == (128, 128) and model.num_clusters == 4
    assert torch.equal(model.layers[0].mixer.A_log, ref.layers[0].mixer.A_log)
    with pytest.raises(CheckpointError):  # the registry's tiny has a 512-wide decoder: does not fit
        load_pretrainer(str(path), size="tiny")
    clf = armvision.create_classifier("tiny", num_classes=3, img_size=32, embed_dim=32, depth=2)
    torch.save({"model": clf.state_dict(), "model_config": dataclasses.asdict(clf.config)}, tmp_path / "clf.pth")
    with pytest.raises(CheckpointError, match="visualize needs an ARM pretraining checkpoint"):
        load_pretrainer(str(tmp_path / "clf.pth"))
