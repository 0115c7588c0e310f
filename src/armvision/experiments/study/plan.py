"""The study's fixed budget (StudyPlan) and its cells, in run order (each pretraining before the finetunings that
start from it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class StudyPlan:
    """The fixed budget of the study. Defaults: about an hour on 2 CPU cores; `quick()` for a smoke test."""

    data: Optional[str] = None  # ImageFolder root; None = the embedded digits
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    ablation_seeds: List[int] = field(default_factory=lambda: [0, 1])
    label_fractions: List[float] = field(default_factory=lambda: [1.0, 0.1])
    ablation_fraction: float = 0.1  # ablations are finetuned with this fraction of the labels
    img_size: int = 32
    patch_size: int = 4  # 32 px / 4 = 8x8 patches: clusters of 1x1, 2x2 and 4x4 patches all fit
    embed_dim: int = 48
    depth: int = 4
    decoder_embed_dim: int = 48
    batch_size: int = 64
    pretrain_steps: int = 200
    finetune_steps: int = 50
    pretrain_blr: float = 1e-2  # the demo's tuned rates for this tiny model (lr = blr * batch / 256)
    finetune_blr: float = 2e-2
    cluster_sizes: List[int] = field(default_factory=lambda: [1, 2, 4])
    orderings: List[str] = field(default_factory=lambda: ["row", "column", "random"])
    decoder_depths: List[int] = field(default_factory=lambda: [1, 2, 4])
    default_cluster: int = 4  # the reference defaults: 4x4-patch clusters, row order, 4 decoder blocks
    default_ordering: str = "row"
    default_decoder_depth: int = 4

    @classmethod
    def quick(cls, **kw: Any) -> "StudyPlan":
        small = dict(seeds=[0], ablation_seeds=[0], label_fractions=[1.0, 0.1], embed_dim=32, depth=2,
                     decoder_embed_dim=32, batch_size=32, pretrain_steps=8, finetune_steps=6,
                     cluster_sizes=[1, 4], orderings=["row", "random"], decoder_depths=[1, 4])
        small.update(kw)
        return cls(**small)


def arm_variant(plan: StudyPlan, cluster: Optional[int] = None, ordering: Optional[str] = None,
                decoder_depth: Optional[int] = None) -> Dict[str, Any]:
    """An ARM pretraining variant: the plan's defaults with at most the given knobs changed."""
    return {"cluster_size": cluster or plan.default_cluster, "ordering": ordering or plan.default_ordering,
            "decoder_depth": decoder_depth or plan.default_decoder_depth}


def variant_name(v: Dict[str, Any]) -> str:
    """Folder-name form of a variant: "mae" or "arm-c{cluster}-{ordering}-d{decoder depth}"."""
    if v.get("method") == "mae":
        return "mae"
    return f"arm-c{v['cluster_size']}-{v['ordering']}-d{v['decoder_depth']}"


def pretrain_variants(plan: StudyPlan) -> List[Dict[str, Any]]:
    """The default ARM model first, then each one-knob ablation once, then MAE."""
    out = [arm_variant(plan)]
    out += [arm_variant(plan, cluster=k) for k in plan.cluster_sizes]
    out += [arm_variant(plan, ordering=o) for o in plan.orderings]
    out += [arm_variant(plan, decoder_depth=d) for d in plan.decoder_depths]
    out.append({"method": "mae"})
    unique: Dict[str, Dict[str, Any]] = {}
    for v in out:
        unique.setdefault(variant_name(v), v)
    return list(unique.values())


@dataclass
class Cell:
    """One training run of the study."""

    kind: str  # "pretrain" or "finetune"
    name: str  # folder name under cells/
    seed: int
    variant: Dict[str, Any]  # pretraining variant (for finetune: of its init; {} = from scratch)
    fraction: float = 1.0
    group: str = "main"  # "main" or "ablation"

    @property
    def init_name(self) -> Optional[str]:
        return f"pretrain-{variant_name(self.variant)}-s{self.seed}" if self.variant else None


def plan_cells(plan: StudyPlan) -> List[Cell]:
    """All cells in run order (each pretraining before the finetunings that start from it)."""
    default, mae = arm_variant(plan), {"method": "mae"}
    cells: List[Cell] = []
    for seed in sorted(set(plan.seeds) | set(plan.ablation_seeds)):
        variants = [default, mae] if seed in plan.seeds else []
        if seed in plan.ablation_seeds:
            variants += [v for v in pretrain_variants(plan) if v not in variants]
        for v in variants:
            cells.append(Cell("pretrain", f"pretrain-{variant_name(v)}-s{seed}", seed, v))
        if seed in plan.seeds:
            for frac in plan.label_fractions:
                for v, label in (({}, "scratch"), (default, variant_name(default)), (mae, "mae")):
                    cells.append(Cell("finetune", f"finetune-{label}-f{frac:g}-s{seed}", seed, v, frac))
        if seed in plan.ablation_seeds:
            for v in pretrain_variants(plan):
                if v == mae or (v == default and seed in plan.seeds and plan.ablation_fraction in plan.label_fractions):
                    continue
                cells.append(Cell("finetune", f"finetune-{variant_name(v)}-f{plan.ablation_fraction:g}-s{seed}",
                                  seed, v, plan.ablation_fraction, group="ablation"))
    return cells


def make_plan(quick: bool = False, data: Optional[str] = None, seeds: Optional[List[int]] = None,
              pretrain_steps: Optional[int] = None, finetune_steps: Optional[int] = None) -> StudyPlan:
    """The default plan (or the quick one) with the given changes; the ablations use the first two seeds."""
    overrides: Dict[str, Any] = {"data": data}
    if seeds:
        overrides.update(seeds=list(seeds), ablation_seeds=list(seeds)[:2])
    if pretrain_steps:
        overrides["pretrain_steps"] = pretrain_steps
    if finetune_steps:
        overrides["finetune_steps"] = finetune_steps
    return StudyPlan.quick(**overrides) if quick else StudyPlan(**overrides)
