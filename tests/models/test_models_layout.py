"""models/ as issue 24 asks: one family table, the Hub below checkpoint loading and the registry (imports inside
functions counted), and no model module registering itself on import. (No import circle anywhere:
tests/test_layering.py.)"""
import ast
from pathlib import Path

import armvision

MODELS = Path(armvision.__file__).parent / "models"


def imports_within_models():
    """{module: {models modules it imports, at any depth of the file}}."""
    graph = {}
    for path in MODELS.glob("*.py"):
        name = path.stem
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:  # from . import x
                    deps.update(a.name for a in node.names)
        graph[name] = deps & {p.stem for p in MODELS.glob("*.py")}
    return graph


def test_the_hub_sits_below_checkpoint_and_registry():
    graph = imports_within_models()
    assert graph["hub"] == set()  # downloads and uploads only
    assert "hub" in graph["checkpoint"] and "checkpoint" in graph["registry"] and "registry" not in graph["checkpoint"]
    families = {"arm", "classifier", "mae", "contrastive", "backbone"}
    assert not any("registry" in graph[m] or "checkpoint" in graph[m] for m in families)


def test_one_family_table():
    from armvision.models import FAMILIES

    assert {k: v.__name__ for k, v in FAMILIES.items()} == {
        "pretrainer": "ARMPretrainer", "classifier": "ARMClassifier", "mae": "MAEPretrainer",
        "contrastive": "ContrastivePretrainer"}
    for path in MODELS.glob("*.py"):
        text = path.read_text()
        assert "globals()" not in text and "register_model_class" not in text, path.name
