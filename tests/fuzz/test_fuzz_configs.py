"""Fuzzing config loading (issue 25 (6)): any mapping (the nested or flat form, from YAML, JSON, a checkpoint or
Python), any bytes as a --config file or a saved folder's config.json, any saved model config. Each becomes a config
or one ConfigError line; a config that is built reads back equal from its own dict, and its size check counts without
building anything. Run longer with HYPOTHESIS_PROFILE=long."""
import dataclasses

import yaml

from fuzzkit import MemoryBound, hypothesis, mappings, one_line_error, st, values
from armvision.errors import ArmVisionError
from armvision.fields import config_from_dict, knobs_of
from armvision.models.config import CONFIG_CLASSES, read_config_json, saved_model_config
from armvision.models.registry import FAMILIES
from armvision.train.config import LEGACY_KEYS, FinetuneConfig, PretrainConfig, load_config_file, model_knobs

given = hypothesis.given
RUNS = [PretrainConfig, FinetuneConfig]
MODEL_KEYS = sorted({k for c in CONFIG_CLASSES.values() for k in knobs_of(c)})


def _run_keys(cls):
    return {*knobs_of(cls), *model_knobs(cls), *LEGACY_KEYS, "model"}


def run_mappings():
    nested = st.fixed_dictionaries({}, optional={"model": mappings(MODEL_KEYS)})
    return st.sampled_from(RUNS).flatmap(lambda cls: st.tuples(
        st.just(cls), st.builds(lambda a, b: {**a, **b}, mappings(_run_keys(cls)), nested)))


def _size_counts(model_cfg):
    try:
        need = FAMILIES[model_cfg.kind].bytes_needed(model_cfg)  # counted on the meta device
    except ArmVisionError as e:
        one_line_error(e)
        return
    assert isinstance(need, int) and need > 0


@given(run_mappings())
def test_any_mapping_is_a_run_config_or_one_error(case):
    cls, mapping = case
    with MemoryBound():
        try:
            cfg = config_from_dict(cls, mapping, "fuzz.yaml")
        except Exception as e:
            one_line_error(e)
            return
        assert type(cfg) is cls
        assert config_from_dict(cls, dataclasses.asdict(cfg), "again") == cfg  # what a run saves reads back the same
        _size_counts(cfg.model)


model_configs = st.builds(lambda kind, rest: {**rest, "kind": kind} if kind else rest,
                          st.one_of(st.sampled_from(sorted(CONFIG_CLASSES)), values), mappings(MODEL_KEYS))


@given(model_configs)
def test_any_saved_model_config_is_checked_or_refused(values_):
    with MemoryBound():
        try:
            cfg = saved_model_config(values_, "checkpoint.pth: model_config")
        except Exception as e:
            one_line_error(e)
            return
        model_cfg = CONFIG_CLASSES[cfg["kind"]](**{**cfg, "img_size": cfg["img_size"]})
        assert saved_model_config(cfg, "again") == cfg
        _size_counts(model_cfg)


yaml_texts = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(str.encode),
    mappings({*MODEL_KEYS, "model", "epochs", "batch_size", "lr"}).map(lambda d: yaml.safe_dump(d).encode()),
    st.sampled_from([b"a: [1, 2\n", b"- 1\n- 2\n", b"&a [*a]", b"!!python/object:os.system {}\n", b"{{{{{{{{",
                     b"x: !!binary AAA=\n", b"[" * 5000, b"epochs: 2001-13-45\n", b"\xef\xbb\xbfepochs: 3\n"]),
)


@given(yaml_texts)
def test_any_bytes_as_a_config_file_are_read_or_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("yaml") / "run.yaml"
    path.write_bytes(content)
    with MemoryBound():
        try:
            layer = load_config_file(str(path))
        except Exception as e:
            one_line_error(e)
            return
        try:
            config_from_dict(PretrainConfig, layer.values, layer.source)
        except Exception as e:
            one_line_error(e)


json_texts = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda mc: ('{"model_config": %s}' % mc).encode(), st.text(max_size=200)),
    model_configs.map(lambda d: __import__("json").dumps({"model_config": d}, default=str).encode()),
    st.sampled_from([b"[]", b"null", b'{"model_config": 1e999}', b'{"model_config": {"depth": NaN}}',
                     b'{"model_config": {"kind": "classifier", "embed_dim": 1' + b"0" * 5000 + b"}}",
                     b"[" * 100000]),
)


@given(json_texts)
def test_any_bytes_as_a_saved_folders_config_json_are_read_or_refused(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("saved") / "config.json"
    path.write_bytes(content)
    with MemoryBound():
        try:
            cfg = read_config_json(path)
        except Exception as e:
            one_line_error(e)
            return
        assert cfg["model_config"]["kind"] in CONFIG_CLASSES  # the whole file, its model_config checked
