"""Class handling of ImageNet-A/-R/-Sketch/V2: the shipped masks and the restricted-logit scoring."""
from importlib import resources

import pytest
import torch
import torch.nn.functional as F

from armvision.errors import ConfigError, DataError
from armvision.eval.metrics import ClassificationMeter
from armvision.eval.labels import imagenet_wnids
from armvision.eval.robustness import build_class_map, class_mask, subset_wnids, wnid_to_index

# wnid -> (ImageNet-1K index, in ImageNet-A, in ImageNet-R), checked by hand against the sorted ILSVRC-2012 list
KNOWN = {
    "n01440764": (0, False, False),  # tench
    "n01443537": (1, False, True),  # goldfish
    "n01498041": (6, True, True),  # stingray
    "n01531178": (11, True, True),  # goldfinch
    "n02051845": (144, True, True),  # pelican
    "n04507155": (879, True, False),  # umbrella
    "n12267677": (988, True, True),  # acorn
    "n15075141": (999, False, False),  # toilet tissue
}


def test_imagenet_list_is_1000_sorted_unique_wnids():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert list(wnids) == sorted(wnids)
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)


@pytest.mark.parametrize("dataset", ["imagenet-a", "imagenet-r"])
def test_masks_have_200_classes_and_agree_with_timm(dataset):
    mask = class_mask(dataset)
    assert mask.shape == (200,) and len(set(mask.tolist())) == 200
    assert bool((mask[1:] > mask[:-1]).all()) and 0 <= int(mask.min()) and int(mask.max()) < 1000
    name = dataset.replace("imagenet-", "imagenet_") + "_indices.txt"
    timm_idx = [int(x) for x in resources.files("timm.data").joinpath("_info", name).read_text().split()]
    assert mask.tolist() == timm_idx
    index = wnid_to_index()
    assert [index[w] for w in subset_wnids(dataset)] == mask.tolist()


@pytest.mark.parametrize("wnid", sorted(KNOWN))
def test_known_wnids(wnid):
    idx, in_a, in_r = KNOWN[wnid]
    assert wnid_to_index()[wnid] == idx
    assert (idx in class_mask("imagenet-a").tolist()) == in_a
    assert (idx in class_mask("imagenet-r").tolist()) == in_r


def test_imagenet_a_restricted_logits_on_synthetic_logits():
    # folder with 3 ImageNet-A classes (ImageFolder sorts the wnids)
    classes = ["n01498041", "n02051845", "n04507155"]  # ImageNet-1K 6, 144, 879
    cmap = build_class_map("imagenet-a", classes, 1000)
    mask = class_mask("imagenet-a").tolist()
    assert cmap.targets(torch.tensor([0, 1, 2])).tolist() == [mask.index(6), mask.index(144), mask.index(879)]
    logits = torch.zeros(4, 1000)
    logits[:, 0] = 100.0  # tench is not an ImageNet-A class: must never be predicted
    logits[0, 6] = 5.0  # sample 0: stingray, correct
    logits[1, 144], logits[1, 879] = 3.0, 4.0  # sample 1: umbrella beats pelican -> wrong at top-1
    logits[2, 879] = 2.0  # sample 2: umbrella, correct
    logits[3, 11] = 9.0  # sample 3: goldfinch (an A class) beats the label pelican; pelican is 2nd
    logits[3, 144] = 8.0
    folder_targets = torch.tensor([0, 1, 2, 1])
    restricted, target = cmap.restrict(logits), cmap.targets(folder_targets)
    assert restricted.shape == (4, 200)
    meter = ClassificationMeter((1, 5))
    meter.update(restricted, target)
    m = meter.compute()
    assert m["top1"] == pytest.approx(50.0)  # samples 0 and 2
    assert m["top5"] == pytest.approx(100.0)
    expected_loss = F.cross_entropy(logits[:, mask], torch.tensor([mask.index(t) for t in [6, 144, 879, 144]]))
    assert m["loss"] == pytest.approx(float(expected_loss), rel=1e-5)


def test_imagenet_r_and_sketch_and_v2_class_maps():
    r = build_class_map("imagenet-r", ["n01443537", "n01498041"], 1000)  # goldfish is in R
    # R starts goldfish (1), great white shark (2), hammerhead (4), stingray (6): positions 0 and 3
    assert r.logit_mask.shape == (200,) and r.target_map.tolist() == [0, 3]
    sketch = build_class_map("imagenet-sketch", ["n01440764", "n01498041", "n15075141"], 1000)
    assert sketch.logit_mask is None and sketch.target_map.tolist() == [0, 6, 999]
    # ImageNetV2 folders are named "0".."999": ImageFolder sorts them as strings, labels must be the integers
    v2 = build_class_map("imagenetv2", ["0", "1", "10", "100", "2"], 1000)
    assert v2.target_map.tolist() == [0, 1, 10, 100, 2]
    assert build_class_map("folder", ["10", "2", "3"], 11).target_map.tolist() == [10, 2, 3]
    assert build_class_map("folder", ["cat", "dog"], 2).target_map.tolist() == [0, 1]


def test_class_map_errors():
    with pytest.raises(DataError, match="not among the 200"):
        build_class_map("imagenet-a", ["n01440764"], 1000)  # tench is not in ImageNet-A
    with pytest.raises(DataError, match="WordNet"):
        build_class_map("imagenet-sketch", ["cat", "dog"], 1000)
    with pytest.raises(ConfigError, match="1000-class"):
        build_class_map("imagenet-r", ["n01443537"], 10)
    with pytest.raises(DataError, match="only 2"):
        build_class_map("folder", ["a", "b", "c"], 2)
    with pytest.raises(ConfigError, match="unknown dataset"):
        build_class_map("imagenet-c", ["a"], 1000)
