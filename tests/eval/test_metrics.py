"""The one classification meter (eval.metrics): streaming, padding, clipping, and sums reduced across processes."""
import ast
import inspect
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from armvision.eval import metrics
from armvision.eval.metrics import PAD, ClassificationMeter, accuracy, topk_correct


def _data(n=53, classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g), torch.randint(0, classes, (n,), generator=g)


def _by_hand(logits, target, ks):
    ranks = (logits > logits.gather(1, target[:, None])).sum(1)  # how many classes beat the label
    return {f"top{k}": 100.0 * (ranks < k).float().mean().item() for k in ks}


def test_streamed_batches_give_the_metrics_of_the_whole_set():
    logits, target = _data()
    meter = ClassificationMeter((1, 3, 5))
    for i in range(0, len(target), 10):  # uneven last batch
        meter.update(logits[i:i + 10], target[i:i + 10])
    m = meter.compute()
    want = _by_hand(logits, target, (1, 3, 5))
    assert m["top1"] == pytest.approx(want["top1"]) and m["top3"] == pytest.approx(want["top3"])
    assert m["top5"] == pytest.approx(want["top5"]) and m["num_images"] == len(target)
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    assert accuracy(logits, target, (1, 5)) == pytest.approx([want["top1"], want["top5"]])
    assert topk_correct(logits, target, (1,)) == [int((logits.argmax(1) == target).sum())]


def test_padding_is_not_counted_and_k_is_clipped_to_the_classes():
    logits, target = _data(n=20, classes=3)
    plain = ClassificationMeter((1, 5))
    plain.update(logits, target)
    padded = ClassificationMeter((1, 5))
    padded.update(torch.cat([logits, logits[:4]]), torch.cat([target, torch.full((4,), PAD)]))
    assert padded.compute() == pytest.approx(plain.compute())
    assert plain.compute()["top5"] == 100.0  # 3 classes: top-5 = top-3
    only_pad = ClassificationMeter((1,))
    only_pad.update(logits[:2], torch.full((2,), PAD))
    assert only_pad.compute() == {"top1": 0.0, "loss": 0.0, "num_images": 0}


def test_reduced_sums_of_shards_equal_the_whole_set():
    logits, target = _data()
    whole, a, b = ClassificationMeter(), ClassificationMeter(), ClassificationMeter()
    whole.update(logits, target)
    a.update(logits[:30], target[:30])
    b.update(logits[30:], target[30:])
    a.sums += b.sums  # what all_reduce does across processes
    assert a.compute() == pytest.approx(whole.compute())
    a.all_reduce()  # no process group: nothing changes
    assert a.compute() == pytest.approx(whole.compute())


WORKER = """
import json, sys
import torch, torch.distributed as dist
from armvision.eval.metrics import PAD, ClassificationMeter
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
g = torch.Generator().manual_seed(0)
logits, target = torch.randn(53, 7, generator=g), torch.randint(0, 7, (53,), generator=g)
idx = list(range(rank, 54, world))  # 27 per rank; index 53 is padding
x = torch.stack([logits[i % 53] for i in idx])
y = torch.tensor([int(target[i]) if i < 53 else PAD for i in idx])
meter = ClassificationMeter((1, 5))
for i in range(0, len(y), 8):
    meter.update(x[i:i + 8], y[i:i + 8])
meter.all_reduce()
with open(sys.argv[1] + f"/rank{rank}.json", "w") as f:
    json.dump(meter.compute(), f)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_all_reduce_in_a_real_two_process_evaluation(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path)]
    p = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    logits, target = _data()
    whole = ClassificationMeter((1, 5))
    whole.update(logits, target)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == pytest.approx(whole.compute())


def test_metrics_imports_nothing_from_armvision():
    """train/ (the finetuning evaluation) and eval/ both use the meter: it must not pull either of them in."""
    tree = ast.parse(inspect.getsource(metrics))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert not [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                if a.name.startswith("armvision")]
