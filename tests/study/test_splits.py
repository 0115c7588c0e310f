"""The study's data: a held-out test split, a selection split that chooses the budgets, and a labelled subset drawn
per seed, written as folders of links that the training commands read."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from armvision.data import EMBEDDED_MNIST, build_dataset
from armvision.errors import ConfigError
from armvision.experiments.study import make_plan, plan_cells
from armvision.experiments.study.cells import view_path
from armvision.experiments.study.splits import labelled, list_files, prepare_views, splits, view_name


def _names(files):
    return {(c, f.name) for c, fs in files.items() for f in fs}


def _folder(root, classes=3, train=10, val=4, nested=False):
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / split / f"class{c}" / ("sub" if nested and split == "train" else "")
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8), 20 * c + i, np.uint8)).save(d / f"{c}-{i}.png")
    return root


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """One study folder whose data/pool holds the shipped digits as PNG files (written once: 5,000 files)."""
    return tmp_path_factory.mktemp("mnist-study")


def test_mnist_splits_are_disjoint_stratified_and_fixed(mnist_root):
    tmp_path = mnist_root
    s = splits(EMBEDDED_MNIST, tmp_path, 0.1)
    sizes = {k: sum(map(len, v.values())) for k, v in s.items()}
    assert sizes == {"fit": 3600, "selection": 400, "test": 1000}
    assert all(len(s["selection"][c]) == 40 and len(s["test"][c]) == 100 for c in s["fit"])
    assert not _names(s["fit"]) & _names(s["selection"])  # the budgets are chosen on images nothing trains on
    assert {f.resolve() for fs in s["test"].values() for f in fs}.isdisjoint(
        f.resolve() for fs in list(s["fit"].values()) + list(s["selection"].values()) for f in fs)
    again = splits(EMBEDDED_MNIST, tmp_path, 0.1)  # the pool is written once; the split never moves
    assert _names(again["selection"]) == _names(s["selection"])
    val = build_dataset(EMBEDDED_MNIST, "val", None, 28)  # the test split is the shipped val split, image for image
    pool = list_files(tmp_path / "data" / "pool" / "val")
    first = np.asarray(Image.open(pool["0"][0]))
    assert any(np.array_equal(first, np.asarray(val[i][0].convert("L"))) for i in range(100))


def test_labelled_subsets_are_drawn_per_seed(mnist_root):
    tmp_path = mnist_root
    fit = splits(EMBEDDED_MNIST, tmp_path, 0.1)["fit"]
    a, b, a2 = labelled(fit, 0.1, 0), labelled(fit, 0.1, 1), labelled(fit, 0.1, 0)
    assert all(len(fs) == 36 for fs in a.values())  # ceil(10 % of 360) of every class
    assert _names(a) == _names(a2) and _names(a) != _names(b)  # the same for one seed, another for the next
    assert _names(a) <= _names(fit) and labelled(fit, 1.0, 3) == fit


def test_views_link_the_right_images_and_the_cells_read_them(mnist_root):
    tmp_path = mnist_root
    plan = make_plan(main_only=True, seeds=[0, 1], methods=["arm"], label_fractions=[0.1])
    cells = plan_cells(plan)
    sizes = prepare_views(plan.data, tmp_path, plan.selection_fraction, [c.view for c in cells])
    assert sizes == {"fit": 3600, "selection": 400, "test": 1000, "labelled: 0.1": 360}
    views = sorted(p.name for p in (tmp_path / "data" / "views").iterdir())
    assert views == ["f0.1-s0-test", "f0.1-s1-test", "pretrain", "probe"]
    for cell in cells:
        assert view_path(tmp_path, cell).is_dir()
    ft = next(c for c in cells if c.kind == "finetune" and c.seed == 1)
    train = build_dataset(str(view_path(tmp_path, ft)), "train", None)
    test = build_dataset(str(view_path(tmp_path, ft)), "val", None)
    assert (len(train), len(test)) == (360, 1000) and train.classes == [str(i) for i in range(10)]
    pre = build_dataset(str(tmp_path / "data" / "views" / "pretrain"), "train", None)
    assert len(pre) == 3600
    link = next((view_path(tmp_path, ft) / "train" / "3").iterdir())
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: the study folder can move
    assert view_name("finetune", 0.1, 2, "selection") == "f0.1-s2-selection"


def test_an_imagefolder_is_split_the_same_way(tmp_path):
    data = _folder(tmp_path / "imgs", nested=True)
    s = splits(str(data), tmp_path / "study", 0.2)
    assert {k: sum(map(len, v.values())) for k, v in s.items()} == {"fit": 24, "selection": 6, "test": 12}
    prepare_views(str(data), tmp_path / "study", 0.2, [("finetune", 0.5, 0, "selection")])
    view = tmp_path / "study" / "data" / "views" / "f0.5-s0-selection"
    names = sorted(p.name for p in (view / "train" / "class1").iterdir())
    assert len(names) == 4 and all(n.startswith("sub__1-") for n in names)  # nested files flattened, linked
    assert len(build_dataset(str(view), "val", None)) == 6  # curves are judged on the selection split
    assert not (tmp_path / "study" / "data" / "pool").exists()  # an ImageFolder is read where it is


def test_bad_data_is_refused_by_name(tmp_path):
    (tmp_path / "only-train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="missing .*val"):
        splits(str(tmp_path / "only-train"), tmp_path / "s", 0.1)
    data = _folder(tmp_path / "one", classes=2, train=1, val=1)
    with pytest.raises(ConfigError, match="too few train images"):
        splits(str(data), tmp_path / "s", 0.1)
    Path(tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    Path(tmp_path / "empty" / "val").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no class folder with images"):
        splits(str(tmp_path / "empty"), tmp_path / "s", 0.1)
