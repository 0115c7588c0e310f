"""Models: the ARM pretrainer, the classifier, sizes, and checkpoint conversion."""
from .arm import ARMOutput, ARMPretrainer, default_feature_layers
from .checkpoint import (LoadReport, from_pretrained, infer_config, load_checkpoint, load_model, read_checkpoint,
                         save_pretrained, select_state_dict)
from .classifier import ARMClassifier, checkpoint_filter_fn
from .hub import model_card, push_to_hub
from .config import SIZES, ClassifierConfig, PretrainerConfig, make_config
from .mae import MAEOutput, MAEPretrainer, create_mae
from .contrastive import ContrastiveOutput, ContrastivePretrainer, create_contrastive, nt_xent
from .registry import build_model, create_classifier, create_pretrainer, register_timm, vim_matched_config

register_timm()

__all__ = [
    "ARMOutput", "ARMPretrainer", "default_feature_layers", "ARMClassifier", "LoadReport", "from_pretrained",
    "infer_config", "load_checkpoint", "load_model", "read_checkpoint", "save_pretrained", "select_state_dict", "SIZES",
    "ClassifierConfig", "PretrainerConfig", "make_config", "build_model", "create_classifier", "create_pretrainer",
    "MAEOutput", "MAEPretrainer", "create_mae", "model_card", "push_to_hub", "checkpoint_filter_fn",
    "vim_matched_config", "ContrastiveOutput", "ContrastivePretrainer", "create_contrastive", "nt_xent",
]
