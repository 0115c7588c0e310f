import pytest

from armvision.data import build_dataset
from armvision.errors import ConfigError
from armvision.train.finetune import label_subset


def test_label_subset_is_stratified_and_fixed():
    data = build_dataset(None, "train", None, 32, False)
    a, b = label_subset(data, 0.1), label_subset(data, 0.1)
    assert a.indices == b.indices  # the same subset whatever the run's seed
    counts = {c: a.targets.count(c) for c in range(10)}
    full = {c: data.targets.count(c) for c in range(10)}
    assert all(counts[c] == -(-full[c] // 10) for c in range(10))  # ceil(10%) of every class
    assert [data.targets[i] for i in a.indices] == a.targets and a.classes == data.classes
    with pytest.raises(ConfigError, match="label_fraction"):
        label_subset(data, 0.0)
