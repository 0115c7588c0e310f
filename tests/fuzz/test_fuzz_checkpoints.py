"""Fuzzing checkpoint reading (issue 25 (6)): random bytes, a real checkpoint truncated or with bytes changed, and
pickles that try to run code (raw opcodes, and objects whose unpickling would call open / os.system / exec, also
inside containers, an argparse.Namespace or a torch zip). Reading (and building the model a file describes) gives a
model or one ArmVisionError line; the code never runs. Run longer with HYPOTHESIS_PROFILE=long."""
import argparse
import io
import json
import os
import pickle

import pytest
import torch

import armvision
from fuzzkit import MemoryBound, hypothesis, one_line_error, st, values
from armtest import tiny_classifier
from armvision.fields import knobs_of
from armvision.models import load_model, read_checkpoint
from armvision.models.config import CONFIG_CLASSES

given = hypothesis.given


@pytest.fixture(scope="module")
def real_checkpoint():
    """The bytes of a small training-style checkpoint (weights + model config)."""
    torch.manual_seed(0)
    model = tiny_classifier(embed_dim=16, depth=1, img_size=16, num_classes=3)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "model_config": vars(model.config) | {}, "step": 3}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    """The model.safetensors bytes of a small saved classifier."""
    folder = tmp_path_factory.mktemp("real")
    armvision.save_pretrained(tiny_classifier(embed_dim=16, depth=1, img_size=16, num_classes=3), folder,
                              model_card=False)
    return (folder / "model.safetensors").read_bytes()


def _read(path):
    """read_checkpoint, then the model it describes: a result or one ArmVisionError line."""
    try:
        ckpt = read_checkpoint(path)
        load_model(ckpt)
    except Exception as e:
        one_line_error(e)


@given(st.binary(max_size=2000))
def test_random_bytes_are_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    path.write_bytes(content)
    with MemoryBound():
        _read(path)


@given(st.data())
def test_a_damaged_checkpoint_is_read_or_refused(tmp_path_factory, real_checkpoint, data):
    content = bytearray(real_checkpoint)
    cut = data.draw(st.integers(0, len(content)), label="truncate at")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(0, 255)), max_size=8),
                      label="bytes changed")
    for i, b in flips:
        content[i] = b
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    path.write_bytes(bytes(content[:cut]))
    with MemoryBound():
        _read(path)


MODEL_KEYS = sorted({k for c in CONFIG_CLASSES.values() for k in knobs_of(c)})
SMALL = st.one_of(values, st.integers(0, 40), st.sampled_from([[16, 16], [16, 24], [8], [], "16"]))
saved_configs = st.builds(lambda base, changes: {**base, **changes},
                          st.sampled_from([{"kind": "classifier", "embed_dim": 16, "depth": 1, "img_size": 16,
                                            "patch_size": 8, "num_classes": 3},
                                           {"kind": "pretrainer", "embed_dim": 16, "depth": 1, "img_size": 32,
                                            "patch_size": 8, "cluster_size": 2, "decoder_embed_dim": 16,
                                            "decoder_depth": 1}]),
                          st.dictionaries(st.sampled_from(MODEL_KEYS), SMALL, max_size=4))


@given(saved_configs)
def test_a_saved_folder_with_any_config_json_loads_or_is_refused(tmp_path_factory, saved_folder, model_config):
    """What `eval --checkpoint DIR` reads: the weights of a real folder, its config.json fuzzed (issue 25 (2): a
    negative width used to end in a RuntimeError, text in a TypeError, a huge depth in a hang)."""
    folder = tmp_path_factory.mktemp("saved")
    (folder / "model.safetensors").write_bytes(saved_folder)
    (folder / "config.json").write_text(json.dumps({"model_config": model_config}, default=str))
    with MemoryBound():
        _read(folder)


class _Call:
    """Unpickled (unsafely), calls `fn(*args)`: what a malicious checkpoint hides."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return [_Call(open, str(marker), "w"), _Call(os.system, f"touch {marker}"), _Call(exec, code),
            _Call(eval, f"__import__('os').system('touch {marker}')")]


def _wrap(obj, how):
    return {"dict": lambda: {"model": {"w": obj}}, "list": lambda: [torch.ones(1), obj],
            "namespace": lambda: {"args": argparse.Namespace(lr=obj), "model": {}},
            "bare": lambda: obj}[how]()


@given(st.integers(0, 3), st.sampled_from(["dict", "list", "namespace", "bare"]), st.sampled_from(["torch", "raw"]),
       st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_pickles_that_run_code_are_refused_and_never_run(tmp_path_factory, which, how, container, protocol):
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "ran"
    payload = _wrap(_payloads(marker)[which], how)
    path = folder / "model.pth"
    if container == "torch":
        torch.save(payload, path, pickle_protocol=max(2, protocol))
    else:
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    _read(path)
    assert not marker.exists(), "the checkpoint ran code"


OPCODES = [b"cos\nsystem\n", b"cbuiltins\nexec\n", b"cbuiltins\neval\n", b"cposix\nsystem\n", b"(", b"t", b"R",
           b"b", b"}", b"]", b"a", b"s", b"N", b"I1\n", b"0", b"2", b"\x93", b"\x8c\x02os\x94", b"\x8c\x06system\x94"]


@given(st.lists(st.sampled_from(OPCODES) | st.binary(max_size=4), max_size=24))
def test_raw_opcode_pickles_never_run(tmp_path_factory, ops):
    folder = tmp_path_factory.mktemp("ops")
    marker = folder / "ran"
    touch = f"S'touch {marker}'\n".encode()
    path = folder / "model.pth"
    path.write_bytes(b"\x80\x02" + b"".join(op if op != b"N" else touch for op in ops) + b".")
    _read(path)
    assert not marker.exists(), "the checkpoint ran code"
