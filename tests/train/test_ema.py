"""Issue 25 (7): the EMA is saved, updated after every optimizer step, and restored exactly by --resume (README's
claim). Each test fails if the checkpoint holds no EMA, if the EMA is never updated, or if a resume skips it."""
import pytest
import torch
from torch.utils.data import TensorDataset

from armvision.train.checkpoint import load_file
from armvision.train.config import FinetuneConfig
from armvision.train.distributed import DistInfo
from armvision.train.engine import Trainer
from armvision.train.optim import param_groups

from .conftest import Toy, fit

DECAY = 0.7
RUN = dict(num_workers=0, progress=False, tensorboard=False, log_every=1, epochs=4, warmup_epochs=0, blr=0.5,
           batch_size=8, clip_grad=None, mixup=0.0, cutmix=0.0, save_every=1, fit_recipe=False)  # the EMA as set


class Interrupted(Exception):
    pass


def _trainer(out, seen=None, stop_at=None, **cfg):
    """A finetuning Trainer with an EMA; `stop_at`: the run is interrupted in that step (after the checkpoint of
    the step before), as a kill would."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.zeros(32, dtype=torch.long))
    calls = []

    def loss_fn(m, x, y):
        calls.append(1)
        if len(calls) == stop_at:
            raise Interrupted
        if seen is not None:
            seen.append(m.lin.weight.detach().clone())  # the weights before this step
        return m(x).pow(2).mean()

    conf = FinetuneConfig(output=str(out), **{**RUN, **cfg})
    return Trainer(conf, DistInfo(), Toy(), data, loss_fn, make_groups=lambda m: param_groups(m, 0.0),
                   ema_decay=DECAY)


def test_the_ema_is_saved_and_follows_every_step(tmp_path):
    seen = []
    fit(_trainer(tmp_path, seen, max_steps=6))
    ck = load_file(tmp_path / "checkpoint-last.pth")
    assert ck["step"] == 6 and ck["ema"] is not None
    weights = seen[1:] + [ck["model"]["lin.weight"]]  # w_1 .. w_6, the weights after each step
    ema = weights[0].clone()  # timm's ModelEmaV3: the first update copies the weights
    for w in weights[1:]:
        ema = DECAY * ema + (1 - DECAY) * w
    assert not torch.allclose(ema, weights[-1])  # the EMA is not just the weights
    torch.testing.assert_close(ck["ema"]["lin.weight"], ema, rtol=1e-6, atol=1e-7)


def test_resume_restores_the_ema_exactly(tmp_path):
    fit(_trainer(tmp_path / "full", max_steps=8))
    with pytest.raises(Interrupted):
        fit(_trainer(tmp_path / "cut", stop_at=4, max_steps=8))
    mid = load_file(tmp_path / "cut" / "checkpoint-last.pth")
    assert mid["step"] == 3 and not torch.equal(mid["ema"]["lin.weight"], mid["model"]["lin.weight"])
    fit(_trainer(tmp_path / "cut", max_steps=8, resume="auto"))
    full, cut = (load_file(tmp_path / d / "checkpoint-last.pth") for d in ("full", "cut"))
    assert full["step"] == cut["step"] == 8
    for k, v in full["ema"].items():
        assert torch.equal(v, cut["ema"][k]), k  # bitwise: the EMA continued, it did not restart at step 3
    for k, v in full["model"].items():
        assert torch.equal(v, cut["model"][k]), k
