"""Models: the ARM pretrainer, the classifier, the baselines, checkpoints and the Hub; `registry` is the table of
families, factories and timm entry points (importing this package registers arm_<size> with timm)."""
from .arm import ARMOutput, ARMPretrainer, default_feature_layers
from .backbone import vim_matched_config
from .checkpoint import LoadReport, push_to_hub, read_checkpoint, save_pretrained, select_state_dict
from .classifier import ARMClassifier, checkpoint_filter_fn
from .config import SIZES, ClassifierConfig, PretrainerConfig, make_config
from .contrastive import ContrastiveOutput, ContrastivePretrainer, create_contrastive, nt_xent
from .hub import HubError, model_card
from .mae import MAEOutput, MAEPretrainer, create_mae
from .registry import (FAMILIES, build_model, create_classifier, create_pretrainer, from_pretrained, infer_config,
                       load_checkpoint, load_model, state_dict_kind)

__all__ = [
    "ARMOutput", "ARMPretrainer", "default_feature_layers", "ARMClassifier", "LoadReport", "from_pretrained",
    "infer_config", "load_checkpoint", "load_model", "read_checkpoint", "save_pretrained", "select_state_dict", "SIZES",
    "ClassifierConfig", "PretrainerConfig", "make_config", "build_model", "create_classifier", "create_pretrainer",
    "MAEOutput", "MAEPretrainer", "create_mae", "model_card", "push_to_hub", "checkpoint_filter_fn",
    "vim_matched_config", "ContrastiveOutput", "ContrastivePretrainer", "create_contrastive", "nt_xent", "FAMILIES",
    "state_dict_kind", "HubError",
]
