import subprocess
import sys

import pytest
import torch

import armvision
from armtest import tiny_classifier, tiny_pretrainer
from armvision.errors import CheckpointError


def test_save_pretrained_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = tiny_pretrainer(ordering="random", order_seed=3).eval()
    armvision.save_pretrained(m, tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    m2 = armvision.from_pretrained(tmp_path / "p").eval()
    assert m2.config == m.config
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x).pred, m2(x).pred)
    # the bare safetensors file loads too
    m3 = tiny_pretrainer(ordering="random", order_seed=3)
    armvision.load_checkpoint(m3, tmp_path / "p" / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m3.state_dict().values()))


def test_training_dict_with_ema_key(tmp_path):
    m, ema = tiny_classifier(), tiny_classifier()
    path = tmp_path / "ck.pth"
    torch.save({"model": m.state_dict(), "model_ema": ema.state_dict(), "epoch": 3}, path)
    target = tiny_classifier()
    armvision.load_checkpoint(target, path, key="model_ema")
    assert torch.equal(target.head.weight, ema.head.weight)
    armvision.load_checkpoint(target, path, key="ema")  # alias
    armvision.load_checkpoint(target, {"model": m.state_dict()})
    assert torch.equal(target.head.weight, m.head.weight)
    armvision.load_checkpoint(target, m.state_dict())  # a bare state dict
    ddp = {f"module.{k}": v for k, v in ema.state_dict().items()}
    armvision.load_checkpoint(target, ddp)
    assert torch.equal(target.head.weight, ema.head.weight)


def test_our_pretrainer_checkpoint_into_classifier_at_another_resolution():
    pre = tiny_pretrainer(depth=2)
    cls = tiny_classifier(img_size=48)
    rep = armvision.load_checkpoint(cls, {"model": pre.state_dict()})
    assert any("pos_embed" in r for r in rep.resized) and cls.pos_embed.shape == (1, 37, 32)
    assert torch.equal(cls.layers[1].mixer.x_proj_c_b.weight, pre.layers[1].mixer.x_proj.weight)


def test_classifier_checkpoint_resized_to_another_resolution():
    small = tiny_classifier()
    big = tiny_classifier(img_size=64)
    rep = armvision.load_checkpoint(big, {"model": small.state_dict()})
    assert rep.resized and torch.equal(big.pos_embed[:, 32], small.pos_embed[:, 8])  # cls slot kept


def test_shape_mismatch_is_loud_unless_told(tmp_path):
    other = tiny_classifier(embed_dim=48)
    with pytest.raises(CheckpointError, match="embed_dim 48.*embed_dim 32"):
        armvision.load_checkpoint(tiny_classifier(), {"model": other.state_dict()})
    five = tiny_classifier(num_classes=5)
    m = tiny_classifier()
    rep = armvision.load_checkpoint(m, {"model": five.state_dict()}, strict=False)
    assert [s.split()[0] for s in rep.skipped] == ["head.weight", "head.bias"]
    assert torch.equal(m.layers[0].mlp.w1.weight, five.layers[0].mlp.w1.weight)


def test_classifier_checkpoint_into_pretrainer_is_refused():
    with pytest.raises(CheckpointError, match="finetuned classifier checkpoint"):
        armvision.load_checkpoint(tiny_pretrainer(), {"model": tiny_classifier().state_dict()})


def test_depth_mismatch_names_both_sizes():
    with pytest.raises(CheckpointError, match="depth 4.*depth 2"):
        armvision.load_checkpoint(tiny_classifier(), {"model": tiny_pretrainer().state_dict()})


def test_missing_keys_are_loud():
    sd = tiny_pretrainer().state_dict()
    del sd["ar_pred.weight"]
    with pytest.raises(CheckpointError, match="missing.*ar_pred.weight"):
        armvision.load_checkpoint(tiny_pretrainer(), sd)


def test_bad_files(tmp_path, fixtures_dir):
    m = tiny_classifier()
    with pytest.raises(CheckpointError, match="does not exist"):
        armvision.load_checkpoint(m, tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        armvision.load_checkpoint(m, tmp_path / "empty.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint at all\n")
    with pytest.raises(CheckpointError, match="not a"):
        armvision.load_checkpoint(m, tmp_path / "notes.pth")
    data = (fixtures_dir / "reference_finetune_checkpoint.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        armvision.load_checkpoint(m, tmp_path / "trunc.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        armvision.load_checkpoint(m, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="without model.safetensors"):
        armvision.load_checkpoint(m, tmp_path)
    torch.save({"optimizer": {"state": {}}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError, match="no 'model' weights"):
        armvision.load_checkpoint(m, tmp_path / "opt.pth")


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": tiny_classifier().state_dict(), "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused.*run.*print"):
        armvision.load_checkpoint(tiny_classifier(), path)


def test_convert_cli(tmp_path, fixtures_dir, capsys):
    from armvision.cli import main

    assert main(["convert", str(fixtures_dir / "reference_pretrain_checkpoint.pth"), str(tmp_path / "out"),
                 "--kind", "classifier", "--num-classes", "10"]) == 0
    m = armvision.from_pretrained(tmp_path / "out")
    assert isinstance(m, armvision.ARMClassifier) and m.num_classes == 10 and m.config.img_size == (192, 192)
    assert main(["convert", str(tmp_path / "nothing.pth"), str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_error_is_one_line_without_traceback(tmp_path):
    (tmp_path / "x.pth").write_text("hello")
    r = subprocess.run([sys.executable, "-m", "armvision.cli", "convert", str(tmp_path / "x.pth"), str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
