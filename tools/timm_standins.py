"""Stand-ins for the official ARM weights in a huggingface_hub cache, for running timm's model tests offline.

timm's `test_model_load_pretrained` builds every model that has weights (`arm_<size>.arm_in1k[_ft_in1k]`) with
pretrained=True, in_chans=1 and num_classes 5 / 0. Without a network the official files cannot be downloaded, so this
writes files of the same format, names and shapes (the reference's `{"model": state_dict, "args": Namespace}`, our
parameter names being the reference's) made by randomly initialised models, as one snapshot of OliverRen/ARM in the
cache folder given (HF_HUB_CACHE; with HF_HUB_OFFLINE=1 hf_hub_download resolves them like real downloads).

    python tools/timm_standins.py "$HF_HOME/hub" [base large huge]
"""
import argparse
import hashlib
import sys
from pathlib import Path

import torch

import armvision
from armvision.models.registry import OFFICIAL_REPO, default_cfgs


def main(cache: Path, sizes) -> None:
    commit = hashlib.sha1(b"armvision stand-ins").hexdigest()
    repo = cache / f"models--{OFFICIAL_REPO.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for size in sizes:
        for tag, cfg in default_cfgs[f"arm_{size}"].cfgs.items():
            out = snap / cfg.hf_hub_filename
            if out.exists():
                continue
            torch.manual_seed(0)
            make = armvision.create_pretrainer if tag == "arm_in1k" else armvision.create_classifier
            model = make(size)
            args = argparse.Namespace(model=f"arm_{size}", input_size=model.config.img_size)
            torch.save({"model": model.state_dict(), "args": args}, out)
            print(f"wrote {out} ({out.stat().st_size / 2**20:.0f} MiB)", flush=True)
            del model


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["base", "large", "huge"])
