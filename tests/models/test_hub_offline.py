"""The Hub without a network: the first failure comes in seconds (not huggingface_hub's ~30 s of retries), as one
line that names HF_HUB_OFFLINE=1 and the cache folder, whole sentences; uploads fail as one HubError line too.

A fresh interpreter per environment (huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when imported): the Hub
is an unreachable local address (HF_ENDPOINT=http://127.0.0.1:9, connection refused), or offline mode is on."""
import json
import os
import subprocess
import sys

import pytest

from armtest import put_in_cache, tiny_classifier
from armvision.models.hub import _reason

SCRIPT = r'''
import json, sys, time
import armvision, timm, torch
res = {}
def attempt(name, fn):
    t = time.perf_counter()
    try:
        fn()
        res[name] = {"ok": True}
    except Exception as e:
        res[name] = {"type": type(e).__name__, "msg": str(e), "armvision": isinstance(e, armvision.models.HubError)}
    res[name]["seconds"] = time.perf_counter() - t
attempt("from_pretrained", lambda: armvision.from_pretrained("hf-hub:OliverRen/ARM", filename="arm_base_finetuned.pth"))
attempt("timm", lambda: timm.create_model("arm_base", pretrained=True, embed_dim=32, depth=2))
attempt("pretrainer", lambda: armvision.create_pretrainer("base", pretrained=True, embed_dim=32, depth=2))
attempt("cached", lambda: armvision.from_pretrained("hf-hub:someone/arm-tiny"))
model = armvision.from_pretrained(sys.argv[1])
attempt("push", lambda: armvision.push_to_hub(model, "someone/arm-tiny-2"))
print("RESULT " + json.dumps(res))
'''


@pytest.fixture(scope="module")
def no_network(tmp_path_factory):
    """{"unreachable": results with HF_ENDPOINT at a closed local port, "offline": results with HF_HUB_OFFLINE=1};
    in both, the cache holds a save_pretrained snapshot of someone/arm-tiny and nothing of OliverRen/ARM."""
    import armvision

    tmp = tmp_path_factory.mktemp("nonet")
    armvision.save_pretrained(tiny_classifier(), tmp / "own")
    put_in_cache(tmp / "home" / "hub", "someone/arm-tiny",
                 {n: tmp / "own" / n for n in ("config.json", "model.safetensors", "README.md")})
    out = {}
    for name, extra in (("unreachable", {"HF_ENDPOINT": "http://127.0.0.1:9"}), ("offline", {"HF_HUB_OFFLINE": "1"})):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HF_HOME=str(tmp / "home"), OMP_NUM_THREADS="1", **extra)
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp / "own")], env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[name] = json.loads(lines[-1][len("RESULT "):])
    out["cache"] = str(tmp / "home" / "hub")
    return out


@pytest.mark.parametrize("env", ["unreachable", "offline"])
@pytest.mark.parametrize("how", ["from_pretrained", "timm", "pretrainer"])
def test_a_missing_file_fails_fast_with_one_line_naming_offline_mode_and_the_cache(no_network, env, how):
    r = no_network[env][how]
    assert r.get("armvision"), r  # our HubError, not huggingface_hub's or httpx's
    msg = r["msg"]
    assert r["seconds"] < 5, r  # huggingface_hub alone retries for ~30 s
    assert "HF_HUB_OFFLINE=1" in msg and no_network["cache"] in msg and "\n" not in msg
    assert "OliverRen/ARM/arm_base_" in msg
    assert not msg.rstrip().endswith(("...", ",", ":")) and "..." not in msg  # whole sentences, nothing cut


def test_the_cache_is_used_when_the_hub_cannot_be_reached(no_network):
    assert no_network["unreachable"]["cached"].get("ok"), no_network["unreachable"]["cached"]
    assert no_network["unreachable"]["cached"]["seconds"] < 10
    assert no_network["offline"]["cached"].get("ok"), no_network["offline"]["cached"]


@pytest.mark.parametrize("env,hint", [("unreachable", "check the network connection to http://127.0.0.1:9"),
                                      ("offline", "HF_HUB_OFFLINE=1 is set; unset it to upload")])
def test_push_to_hub_fails_as_one_line(no_network, env, hint):
    r = no_network[env]["push"]
    assert r.get("armvision") and r["seconds"] < 10, r
    assert r["msg"].startswith("cannot push to someone/arm-tiny-2 on the Hugging Face Hub") and hint in r["msg"]
    assert "\n" not in r["msg"]


def test_reasons_are_whole_sentences():
    long = "First sentence is short. " + "x" * 300
    assert _reason(RuntimeError(long)) == "RuntimeError: First sentence is short."
    assert _reason(RuntimeError("y" * 300)) == "RuntimeError"  # one long sentence: the type alone, never a stump
    assert _reason(OSError("[Errno 111] Connection refused\nmore")) == "OSError: [Errno 111] Connection refused"
