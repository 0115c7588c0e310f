"""The study's fixed budget (StudyPlan) and its cells, in run order (every pretraining before the finetunings and
probes that start from it).

The tiny model's settings (width, depth, image and patch size, decoder width, batch, pretraining rate) come from the
shipped preset `configs/study_tiny.yaml`, the one place they are written. The step budgets are the ones chosen by
`armvision study --curves` (see `curves.py` for the plateau rule); the measurement that set them is written to
STUDY/curves/CURVES.md and quoted in REPORT.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

import yaml

from armvision.errors import ConfigError
from armvision.models import default_feature_layers
from armvision.train import PretrainConfig

PRESET = "study_tiny"  # the CPU study's model; `--preset study_gpu` is the same study at ImageNet-100 scale
Variant = Dict[str, Any]


def preset_settings(name: str = PRESET) -> Dict[str, Any]:
    """StudyPlan fields from a shipped preset configs/NAME.yaml (the model's settings, batch, pretraining rate, data);
    study_gpu adds the GPU, loader processes, its finetuning rate and scaled_budgets."""
    path = resources.files("armvision").joinpath("configs", f"{name}.yaml")
    if not path.is_file():
        raise ConfigError(f"--preset {name}: no such shipped preset (try {PRESET} or study_gpu)")
    cfg = yaml.safe_load(path.read_text())
    m = cfg["model"]
    out = dict(img_size=m["img_size"], patch_size=m["patch_size"], embed_dim=m["embed_dim"], depth=m["depth"],
               decoder_embed_dim=m["decoder_embed_dim"], default_cluster=m["cluster_size"],
               batch_size=cfg["batch_size"], pretrain_blr=cfg["blr"])
    if cfg.get("data"):
        out["data"] = cfg["data"]
    if name == "study_gpu":
        out.update(device="cuda", num_workers=8, precision="auto", finetune_blr=5e-4, **scaled_budgets(StudyPlan()))
    return out


# The GPU study keeps the CPU study's budgets in epochs of the fit split, at ImageNet-100's size (126,689 train
# images less the 10 % selection split: 114,020 fit images) and the GPU preset's batch. For other data scale them the
# same way (steps = epochs x fit images / batch) with --pretrain-steps / --finetune-steps /
# --low-label-finetune-steps, or measure them with --curves.
CPU_FIT, GPU_FIT, GPU_BATCH = 3600, 114_020, 256  # embedded:mnist5k's fit split; ImageNet-100's


def scaled_budgets(plan: "StudyPlan") -> Dict[str, int]:
    """The plan's step budgets at the GPU preset's data size and batch, the same number of epochs."""
    per_step = (GPU_FIT / GPU_BATCH) / (CPU_FIT / plan.batch_size)
    return {k: round(getattr(plan, k) * per_step) for k in ("pretrain_steps", "finetune_steps",
                                                            "low_label_finetune_steps")}


_TINY = preset_settings()


def _tiny(key: str) -> Any:
    return field(default=_TINY[key])


@dataclass
class StudyPlan:
    """The fixed budget of the study (`armvision study --estimate` measures its CPU time); `quick()` for a smoke
    test. Splits: splits.py (fit / selection / held-out test, a labelled subset per seed)."""

    data: str = _tiny("data")  # an ImageFolder root with train/ and val/, or embedded:mnist5k (shipped MNIST)
    selection_fraction: float = 0.1  # of train/, held out (stratified, seed 0) to choose the budgets (--curves)
    device: str = "cpu"  # "cuda" runs every cell on the GPU (the study's compute is then GPU wall-clock)
    num_workers: int = 0  # data-loading processes per cell
    precision: str = "fp32"  # of every cell ("auto" on a GPU: bf16 where it has it)
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # every comparison: >= 5 seeds
    label_fractions: List[float] = field(default_factory=lambda: [1.0, 0.1])
    primary_fraction: float = 0.1  # the baselines', ablations' and efficiency cells' label fraction
    img_size: int = _tiny("img_size")
    patch_size: int = _tiny("patch_size")
    embed_dim: int = _tiny("embed_dim")
    depth: int = _tiny("depth")
    decoder_embed_dim: int = _tiny("decoder_embed_dim")
    batch_size: int = _tiny("batch_size")
    pretrain_blr: float = _tiny("pretrain_blr")
    finetune_blr: float = 2e-2  # the demo's tuned finetuning rate for this tiny model
    # Budgets: `armvision study --curves` measures them on the selection split (CURVES.md beside the run). On the
    # shipped MNIST digits (study/curves/CURVES.md, one seed) the pretraining loss fell 0.383 -> 0.315 (ARM) from 400
    # to 800 steps and 10 %-label finetuning from scratch rose 92.25 -> 94.25 %: neither flat by the rule, so the
    # longest measured, 800 and 800, are the defaults. All-label finetuning was not measured there (the old digits'
    # curve chose 400).
    pretrain_steps: int = 800
    finetune_steps: int = 400  # finetuning with all labels
    low_label_finetune_steps: Optional[int] = 800  # finetuning with a fraction < 1 of the labels (None: as above)
    methods: List[str] = field(default_factory=lambda: ["arm", "mae", "contrastive"])
    cluster_sizes: List[int] = field(default_factory=lambda: [1, 3])  # 9x9 patches: 3x3 clusters -> 9 clusters
    orderings: List[str] = field(default_factory=lambda: ["row", "column", "random"])
    decoder_depths: List[int] = field(default_factory=lambda: [1, 2, 4])  # feature layers held fixed: the last one
    feature_layer_sets: List[List[int]] = field(default_factory=lambda: [[1, 2, 3, 4], [4, 4, 4, 4]])  # at depth 4
    blocks: List[str] = field(default_factory=lambda: ["mambamlp", "vim"])
    vim_depth: Optional[int] = None  # None: the depth whose parameter count is closest to the MambaMLP encoder's
    arm_lengths: List[float] = field(default_factory=lambda: [1.0])  # x pretrain_steps (efficiency)
    mae_lengths: List[float] = field(default_factory=lambda: [1.0, 1.7])  # 1.7: MAE's steps for ARM's CPU time
    probe: bool = True  # linear probe and k-NN of every pretrained encoder of the main comparison
    probe_epochs: int = 100
    default_cluster: int = _tiny("default_cluster")  # 3x3 of 9x9 patches: 9 clusters, as the paper's 4x4 of 12x12
    default_ordering: str = "row"  # the reference defaults: row order, 4 decoder blocks
    default_decoder_depth: int = 4

    @classmethod
    def quick(cls, **kw: Any) -> "StudyPlan":
        """A smoke test of every kind of cell in a few minutes: one seed, a narrow model, a few steps, no verdicts."""
        small = dict(seeds=[0], embed_dim=32, depth=2, decoder_embed_dim=32, batch_size=32, pretrain_steps=8,
                     finetune_steps=6, low_label_finetune_steps=4, cluster_sizes=[1, 3], orderings=["row", "random"],
                     decoder_depths=[1, 2], feature_layer_sets=[[1, 2], [2, 2]], default_decoder_depth=2,
                     arm_lengths=[0.5, 1.0], mae_lengths=[1.0], vim_depth=2, probe_epochs=5)
        small.update(kw)
        return cls(**small)


def arm_variant(plan: StudyPlan, cluster: Optional[int] = None, ordering: Optional[str] = None,
                decoder_depth: Optional[int] = None, feature_layers: Optional[List[int]] = None,
                block: Optional[str] = None, length: Optional[float] = None) -> Variant:
    """An ARM pretraining variant: the plan's defaults with the given knobs changed. feature_layers None is the
    reference's choice; block None the default MambaMLP; length a multiple of the plan's pretraining steps."""
    v: Variant = {"method": "arm", "cluster_size": cluster or plan.default_cluster,
                  "ordering": ordering or plan.default_ordering,
                  "decoder_depth": decoder_depth or plan.default_decoder_depth}
    if feature_layers is not None:
        v["feature_layers"] = list(feature_layers)
    if block not in (None, "mambamlp"):
        v["block"] = block
    if length not in (None, 1.0):
        v["length"] = length
    return v


def method_variant(method: str, length: Optional[float] = None) -> Variant:
    """A baseline pretraining variant (MAE, contrastive), optionally at a multiple of the pretraining steps."""
    return {"method": method, **({"length": length} if length not in (None, 1.0) else {})}


def method_label(method: str) -> str:
    """A pretraining method's name in tables and plots ("MAE" is an acronym; "contrastive" is not)."""
    return method.upper() if method == "mae" else method


def variant_name(v: Variant) -> str:
    """Folder-name form: "mae", "contrastive-p0.5", "arm-c{cluster}-{ordering}-d{depth}[-fl444][-vim][-p0.5]"."""
    if not v:
        return "scratch"
    if v.get("method", "arm") != "arm":
        name = v["method"]
    else:
        name = f"arm-c{v['cluster_size']}-{v['ordering']}-d{v['decoder_depth']}"
        if v.get("feature_layers"):
            name += "-fl" + "".join(map(str, v["feature_layers"]))
    if v.get("block"):
        name += f"-{v['block']}"
    if v.get("length") not in (None, 1.0):
        name += f"-p{v['length']:g}"
    return name


def finetune_steps_of(plan: StudyPlan, fraction: float) -> int:
    """Optimizer steps of a finetuning cell with this label fraction."""
    return plan.finetune_steps if fraction >= 1.0 else (plan.low_label_finetune_steps or plan.finetune_steps)


def pretrain_steps_of(plan: StudyPlan, v: Variant) -> int:
    """Optimizer steps of a pretraining variant (its length x the plan's pretraining steps)."""
    return max(1, round(plan.pretrain_steps * v.get("length", 1.0)))


def ablation_variants(plan: StudyPlan) -> List[Variant]:
    """Each ARM axis once (one knob changed from the defaults); depth axis with all feature layers = the last."""
    last = plan.depth
    out = [arm_variant(plan, cluster=k) for k in plan.cluster_sizes]
    out += [arm_variant(plan, ordering=o) for o in plan.orderings]
    out += [arm_variant(plan, decoder_depth=d, feature_layers=[last] * d) for d in plan.decoder_depths]
    out += [arm_variant(plan, feature_layers=fl) for fl in plan.feature_layer_sets]
    out += [arm_variant(plan, block=b) for b in plan.blocks]
    return _unique(plan, out)


def efficiency_variants(plan: StudyPlan) -> List[Variant]:
    """ARM and MAE at several pretraining lengths (efficiency: top-1 against pretraining wall-clock)."""
    out = [arm_variant(plan, length=x) for x in plan.arm_lengths]
    return out + [method_variant("mae", x) for x in plan.mae_lengths if "mae" in plan.methods]


def _unique(plan: StudyPlan, variants: List[Variant]) -> List[Variant]:
    seen: Dict[str, Variant] = {}
    for v in variants:
        if v.get("feature_layers") is not None and v.get("decoder_depth") == plan.default_decoder_depth and \
                v["feature_layers"] == _reference_layers(plan):
            v = {k: x for k, x in v.items() if k != "feature_layers"}  # the reference's choice is the default
        seen.setdefault(variant_name(v), v)
    return list(seen.values())


def _reference_layers(plan: StudyPlan) -> List[int]:
    """The reference's feature layers for the plan's depth and default decoder depth (the model's own default)."""
    return default_feature_layers(plan.depth, plan.default_decoder_depth)


def pretrain_variants(plan: StudyPlan) -> List[Variant]:
    """Every pretraining variant of the plan: the default ARM, the baselines, the ablations, the efficiency lengths."""
    main = [arm_variant(plan)] + [method_variant(m) for m in plan.methods if m != "arm"]
    return _unique(plan, main + ablation_variants(plan) + efficiency_variants(plan))


@dataclass
class Cell:
    """One run of the study: a pretraining, a finetuning (from `variant`'s checkpoint, {} = from scratch, or
    scratch_block for a from-scratch Vim) or a probe of a pretrained encoder."""

    kind: str  # "pretrain", "finetune" or "probe"
    name: str  # folder name under cells/
    seed: int
    variant: Variant
    fraction: float = 1.0
    group: str = "main"  # "main", "ablation", "efficiency" or "probe"
    scratch_block: Optional[str] = None  # finetune from scratch with this block
    split: str = "test"  # what a finetuning cell is evaluated on: the held-out "test", or "selection" (--curves)

    @property
    def view(self) -> Tuple[str, float, int, str]:
        """The data view it reads (splits.view_name's arguments): a pretraining reads fit, a probe fit and test, a
        finetuning the labelled subset of its seed and fraction, and `split`."""
        return (self.kind, self.fraction, self.seed, self.split)

    @property
    def init_name(self) -> Optional[str]:
        """The pretraining cell this finetuning or probe starts from (None: from scratch, or a pretraining)."""
        return f"pretrain-{variant_name(self.variant)}-s{self.seed}" if self.variant and self.kind != "pretrain" \
            else None

    @property
    def label(self) -> str:
        """The variant's name as results.json records it ("scratch", "scratch-vim", or the pretraining variant)."""
        if not self.variant:
            return "scratch" + (f"-{self.scratch_block}" if self.scratch_block else "")
        return variant_name(self.variant)


def _finetune(v: Variant, seed: int, frac: float, group: str, block: Optional[str] = None) -> Cell:
    label = Cell("finetune", "", seed, v, frac, group, block).label
    return Cell("finetune", f"finetune-{label}-f{frac:g}-s{seed}", seed, v, frac, group, block)


def plan_cells(plan: StudyPlan) -> List[Cell]:
    """All cells in run order: for each seed, its pretrainings, then its finetunings and probes."""
    default = arm_variant(plan)
    main = [default] + [method_variant(m) for m in plan.methods if m != "arm"]
    cells: List[Cell] = []
    for seed in plan.seeds:
        cells += [Cell("pretrain", f"pretrain-{variant_name(v)}-s{seed}", seed, v) for v in pretrain_variants(plan)]
        ft: Dict[str, Cell] = {}
        for frac in plan.label_fractions:
            for v in [{}] + main:
                c = _finetune(v, seed, frac, "main")
                ft.setdefault(c.name, c)
        for v, group in [(v, "ablation") for v in ablation_variants(plan)] + \
                        [(v, "efficiency") for v in efficiency_variants(plan)]:
            c = _finetune(v, seed, plan.primary_fraction, group)
            ft.setdefault(c.name, c)
        for b in plan.blocks:
            if b != "mambamlp":
                c = _finetune({}, seed, plan.primary_fraction, "ablation", b)
                ft.setdefault(c.name, c)
        cells += list(ft.values())
        if plan.probe:
            cells += [Cell("probe", f"probe-{variant_name(v)}-s{seed}", seed, v, group="probe") for v in main]
    return cells


AXES = {"cluster": "cluster_sizes", "order": "orderings", "decoder": "decoder_depths",
        "features": "feature_layer_sets", "block": "blocks"}  # --ablations NAME -> the plan field it keeps
MAIN_ONLY: Dict[str, Any] = dict(cluster_sizes=[], orderings=[], decoder_depths=[], feature_layer_sets=[], blocks=[],
                                 arm_lengths=[], mae_lengths=[])  # --main-only: no ablation or efficiency cells


def make_plan(quick: bool = False, main_only: bool = False, preset: Optional[str] = None,
              ablations: Optional[List[str]] = None, **fields: Any) -> StudyPlan:
    """The default plan (or the quick one, or a shipped preset's) with the given plan fields changed (None: keep).
    main_only keeps the main comparison (from scratch vs ARM vs the baselines, and the probes); `ablations` keeps
    only the named ablation axes (AXES). A new finetune_steps also applies to low-label finetuning unless
    low_label_finetune_steps is given; new label_fractions make the smallest one the primary fraction."""
    over: Dict[str, Any] = {**(preset_settings(preset) if preset else {}), **(MAIN_ONLY if main_only else {})}
    if ablations is not None:
        over.update(_checked_axes(ablations))
    given = {k: v for k, v in fields.items() if v is not None and v != []}
    if "methods" in given:
        given["methods"] = _checked_methods(given["methods"])
    if "label_fractions" in given:
        given["label_fractions"] = _checked_fractions(given["label_fractions"])
        given.setdefault("primary_fraction", min(given["label_fractions"]))
    if "finetune_steps" in given:
        given.setdefault("low_label_finetune_steps", None)
    if given.get("device", "cpu") not in ("cpu", "cuda"):
        raise ConfigError(f"--device {given['device']}: give cpu or cuda")
    plan = (StudyPlan.quick if quick else StudyPlan)(**{**over, **given})
    if plan.primary_fraction not in plan.label_fractions:
        raise ConfigError(f"the primary label fraction {plan.primary_fraction:g} is not one of --label-fractions "
                          f"{' '.join(f'{f:g}' for f in plan.label_fractions)}")
    return plan


def _checked_axes(axes: List[str]) -> Dict[str, Any]:
    """The plan fields that drop every ablation axis not named."""
    unknown = [a for a in axes if a not in AXES and a != "none"]
    if unknown:
        raise ConfigError(f"--ablations {' '.join(axes)}: {unknown[0]} is not one of {', '.join(AXES)} (or none)")
    return {f: [] for a, f in AXES.items() if a not in axes}


def _checked_methods(methods: List[str]) -> List[str]:
    known = list(PretrainConfig.MODELS)  # the library's pretraining methods
    unknown = [m for m in methods if m not in known]
    if unknown or "arm" not in methods:
        others = ", ".join(m for m in known if m != "arm")
        raise ConfigError(f"--methods {' '.join(methods)}: give arm and any of {others}"
                          + (f" ({', '.join(unknown)} is not one)" if unknown else ""))
    return list(dict.fromkeys(methods))


def _checked_fractions(fractions: List[float]) -> List[float]:
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ConfigError(f"--label-fractions {' '.join(f'{f:g}' for f in fractions)}: each must be in (0, 1], "
                          f"not {bad[0]:g}")
    return list(dict.fromkeys(fractions))
