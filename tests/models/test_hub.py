"""Weights from the Hugging Face Hub, offline: the test lays out a real huggingface_hub cache (HF_HOME in a temp dir,
HF_HUB_OFFLINE=1) holding the reference fixtures under OliverRen/ARM, so `hf_hub_download`'s own code path resolves
every file; a fresh interpreter runs the user-facing calls (the offline flag is read when huggingface_hub is
imported). Uploads are checked with HfApi's network methods replaced."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import armvision
from armtest import FIXTURES, put_in_cache, tiny_classifier, tiny_pretrainer

REPO_ROOT = Path(__file__).resolve().parents[2]


SCRIPT = r'''
import json, sys, argparse, torch, timm, armvision, huggingface_hub
from armvision.errors import CheckpointError
fx = sys.argv[1]
def load(name):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(f"{fx}/{name}", weights_only=True)
ft, pt = load("reference_finetune_expected.pth"), load("reference_pretrain_expected.pth")
from huggingface_hub import constants
res = {"offline": constants.HF_HUB_OFFLINE}
def diff(model):
    with torch.no_grad():
        return (model.eval()(ft["input"]) - ft["logits"]).abs().max().item()
small = dict(embed_dim=32, depth=2, num_classes=5)

m = armvision.from_pretrained("hf-hub:OliverRen/ARM", filename="arm_base_finetuned.pth")
res["from_pretrained"] = diff(m)
res["timm"] = diff(timm.create_model("arm_base", pretrained=True, **small))
res["timm_file"] = diff(timm.create_model("arm_base", pretrained=True, **small,
                        pretrained_cfg_overlay=dict(file=f"{fx}/reference_finetune_checkpoint.pth")))
res["revision"] = diff(armvision.from_pretrained("hf-hub:OliverRen/ARM@v1", filename="arm_base_finetuned.pth"))
res["revision_kwarg"] = diff(armvision.from_pretrained("hf-hub:OliverRen/ARM", filename="arm_base_finetuned.pth", revision="v1"))
res["timm_revision"] = diff(timm.create_model("arm_base", pretrained=True, **small,
                            pretrained_cfg_overlay=dict(hf_hub_id="OliverRen/ARM@v1")))
res["torch_hub"] = diff(torch.hub.load(sys.argv[2], "arm_base", source="local", pretrained=True, **small))
ten = timm.create_model("arm_base", pretrained=True, embed_dim=32, depth=2, num_classes=10).eval()
ref = timm.create_model("arm_base", pretrained=True, **small).eval()
with torch.no_grad():
    res["new_head_backbone"] = (ten.forward_features(ft["input"]) - ref.forward_features(ft["input"])).abs().max().item()
    res["new_head_shape"] = list(ten(ft["input"]).shape)
    fo = timm.create_model("arm_base", pretrained=True, features_only=True, out_indices=(-1,), embed_dim=32, depth=2)
    want = ref.forward_intermediates(ft["input"], indices=1, intermediates_only=True)[0]
    res["features_only"] = (fo(ft["input"])[0] - want).abs().max().item()
pre = armvision.create_pretrainer("base", pretrained=True, embed_dim=32, decoder_embed_dim=64).eval()
hub_pre = torch.hub.load(sys.argv[2], "arm_base_pretrain", source="local", pretrained=True, embed_dim=32,
                         decoder_embed_dim=64).eval()
with torch.no_grad():
    res["pretrain_loss"] = abs(pre(pt["input"]).loss.item() - pt["loss"].item())
    res["pretrain_loss_torch_hub"] = abs(hub_pre(pt["input"]).loss.item() - pt["loss"].item())
# the pretraining weights as timm's tag: the classifier backbone the reference finetuning starts from, no head
torch.manual_seed(0)  # (the cls token and final norm are initialised, as when finetuning: the same draws)
enc = timm.create_model("arm_base.arm_in1k", pretrained=True, embed_dim=32).eval()
torch.manual_seed(0)
ref_enc = armvision.create_classifier("base", embed_dim=32, num_classes=0).eval()
armvision.load_checkpoint(ref_enc, f"{fx}/reference_pretrain_checkpoint.pth")
with torch.no_grad():
    res["pretrain_tag"] = (enc(ft["input"]) - ref_enc(ft["input"])).abs().max().item()
    res["pretrain_tag_shape"] = list(enc(ft["input"]).shape)
own = armvision.from_pretrained("hf-hub:someone/arm-tiny")
res["own_repo"] = {k: v.tolist() for k, v in own.state_dict().items() if k == "head.bias"}
try:
    armvision.from_pretrained("hf-hub:OliverRen/ARM", filename="not_there.pth")
except CheckpointError as e:
    res["missing"] = str(e)
try:
    timm.create_model("arm_base", pretrained=True, checkpoint_key="model_ema", **small)
except CheckpointError as e:
    res["no_ema"] = str(e)
print("RESULT " + json.dumps(res))
'''


@pytest.fixture(scope="module")
def offline_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    cache = tmp / "home" / "hub"
    put_in_cache(cache, "OliverRen/ARM", {"arm_base_finetuned.pth": FIXTURES / "reference_finetune_checkpoint.pth",
                                          "arm_base_pretrain.pth": FIXTURES / "reference_pretrain_checkpoint.pth"})
    # revision "v1": the same classifier with every logit shifted by 1 (head bias + 1)
    ckpt = torch.load(FIXTURES / "reference_finetune_checkpoint.pth", weights_only=False)
    ckpt["model"]["head.bias"] = ckpt["model"]["head.bias"] + 1.0
    torch.save(ckpt, tmp / "shifted.pth")
    put_in_cache(cache, "OliverRen/ARM", {"arm_base_finetuned.pth": tmp / "shifted.pth"}, ref="v1")
    torch.manual_seed(0)
    own = tiny_classifier()
    armvision.save_pretrained(own, tmp / "own")
    put_in_cache(cache, "someone/arm-tiny", {n: tmp / "own" / n for n in ("config.json", "model.safetensors", "README.md")})
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp / "home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TORCH_HOME=str(tmp / "torch"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(FIXTURES), str(REPO_ROOT)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    res["own_head_bias"] = own.head.bias.tolist()
    return res


def test_runs_offline_from_the_cache(offline_hub):
    assert offline_hub["offline"] is True


@pytest.mark.parametrize("how", ["from_pretrained", "timm", "timm_file", "torch_hub"])
def test_reference_weights_from_the_hub_give_the_reference_logits(offline_hub, how):
    assert offline_hub[how] < 1e-4


@pytest.mark.parametrize("how", ["revision", "revision_kwarg", "timm_revision"])
def test_revisions(offline_hub, how):
    assert abs(offline_hub[how] - 1.0) < 1e-4  # v1's logits are the reference's + 1


def test_new_num_classes_keeps_the_backbone_and_features_only(offline_hub):
    assert offline_hub["new_head_backbone"] == 0.0 and offline_hub["new_head_shape"] == [1, 10]
    assert offline_hub["features_only"] < 1e-6


def test_pretrainer_from_the_hub_gives_the_reference_loss(offline_hub):
    assert offline_hub["pretrain_loss"] < 1e-4 and offline_hub["pretrain_loss_torch_hub"] < 1e-4


def test_pretraining_weights_as_a_timm_tag(offline_hub):
    assert offline_hub["pretrain_tag"] == 0.0 and offline_hub["pretrain_tag_shape"] == [1, 32]  # headless: (B, D)


def test_save_pretrained_repo_round_trips(offline_hub):
    torch.testing.assert_close(torch.tensor(offline_hub["own_repo"]["head.bias"]), torch.tensor(offline_hub["own_head_bias"]))


def test_missing_file_offline_is_one_clear_error(offline_hub):
    msg = offline_hub["missing"]
    assert "OliverRen/ARM/not_there.pth" in msg and "Hugging Face Hub" in msg
    assert "no 'model_ema' weights" in offline_hub["no_ema"]  # checkpoint_key reaches the loader


def test_push_to_hub_uploads_weights_config_and_card(monkeypatch, tmp_path):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kw):
        calls["create"] = (repo_id, kw.get("private"))

    def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None, **kw):
        calls["files"] = sorted(os.listdir(folder_path))
        calls["card"] = Path(folder_path, "README.md").read_text()
        calls["config"] = json.loads(Path(folder_path, "config.json").read_text())
        return f"https://huggingface.co/{repo_id}"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = tiny_pretrainer()
    url = armvision.push_to_hub(model, "someone/arm-tiny-pt", private=True, accuracy={"digits k-NN top-1": 91.3},
                                training="200 steps on the embedded digits")
    assert url == "https://huggingface.co/someone/arm-tiny-pt" and calls["create"] == ("someone/arm-tiny-pt", True)
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    card = calls["card"]
    assert card.startswith("---\nlibrary_name: armvision") and "| digits k-NN top-1 | 91.3 |" in card
    assert "200 steps on the embedded digits" in card and 'from_pretrained("hf-hub:someone/arm-tiny-pt")' in card
    assert f"{sum(p.numel() for p in model.parameters()):,}" in card
    assert calls["config"]["model_config"]["kind"] == "pretrainer"


def test_local_from_pretrained_with_filename(tmp_path):
    m = tiny_classifier()
    armvision.save_pretrained(m, tmp_path / "w", model_card=False)
    assert sorted(os.listdir(tmp_path / "w")) == ["config.json", "model.safetensors"]
    again = armvision.from_pretrained(tmp_path, filename="w")
    torch.testing.assert_close(again.head.weight, m.head.weight)
