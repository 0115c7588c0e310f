"""`armvision bench model`: images/s and peak memory of ARM models against timm ViTs of the same size, one run.

For each model (ARM classifier, ARM pretrainer, timm ViT) x size x image size, two modes are timed:
`forward` (eval mode, no grad) and `train` (forward + backward + AdamW step). Each mode does `--warmup` untimed
iterations, then `--repeats` timed ones (one batch each, CUDA synchronised); the table gives the median images/s
and the min-max over repeats. The environment (torch version, threads, device, CPU model, load average) is
recorded with the results.

Peak memory. CUDA: `torch.cuda.max_memory_allocated` minus what was allocated before the model was built (so:
weights + gradients + optimizer state + activations + the input batch). CPU: torch has no CPU allocator
statistics, so each measurement runs in a fresh Python process (`--isolate`, the default on CPU) and reports the
growth of the kernel's resident-set high-water mark (VmHWM in /proc/self/status, reset through
/proc/self/clear_refs just before the model is built) over the resident set at that moment. Fresh processes make
that number exact for the process (no memory freed by an earlier model is silently reused) and it covers the
same things as the CUDA number plus allocator slack.

FLOPs per image are counted with `torch.utils.flop_counter.FlopCounterMode` on a batch of one (train: forward +
backward), with the selective scan running through its sequential reference so that the count is the model's math,
not the fast path's (see `reference_scan`). It counts matmuls, convolutions and attention (CPU fused attention added here: torch counts it as 0),
not elementwise work, so most of the selective
scan's recurrence (exp, multiply, add over the d_state dimension) is not in it; it is added as an analytic count
(`scan_gflop`, with the depthwise conv; see `scan_flops`) from the Mamba mixers' shapes, read with forward hooks. MFU = achieved FLOP/s
(counted + scan FLOPs x images/s) / the machine's matmul peak, measured in the same run with a big square
matmul in the benchmark's dtype.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

FAMILIES = ("arm", "arm-pretrain", "vit")
SIZES = ("tiny", "small", "base")
DEFAULT_IMG = {"arm": 224, "arm-pretrain": 192, "vit": 224}
QUICK_IMG = {"arm": 64, "arm-pretrain": 128, "vit": 64}
MODES = ("forward", "train")


@dataclass
class Case:
    """One measurement: a model at one image size and batch, in one mode."""

    family: str
    size: str
    img_size: int
    batch_size: int
    mode: str
    warmup: int = 2
    repeats: int = 5
    device: str = "cpu"
    dtype: str = "float32"
    threads: Optional[int] = None
    peak_n: Optional[int] = None  # side of the square matmul measuring the peak (None: 2048 CPU, 8192 CUDA)

    @property
    def name(self) -> str:
        return {"arm": "ARM", "arm-pretrain": "ARM-pretrain", "vit": "ViT"}[self.family] + f"-{self.size}"


@dataclass
class Result:
    case: Case
    seconds: list[float] = field(default_factory=list)  # per timed iteration
    peak_mem_mb: Optional[float] = None
    matmul_peak_flops: Optional[float] = None  # measured right before this case's timing
    params_m: Optional[float] = None
    counted_gflop: Optional[float] = None  # per image, FlopCounterMode
    scan_gflop: Optional[float] = None  # per image, analytic selective-scan work
    error: Optional[str] = None

    @property
    def images_per_s(self) -> list[float]:
        return [self.case.batch_size / s for s in self.seconds]

    def summary(self) -> dict:
        d = asdict(self)
        ips = self.images_per_s
        if ips:
            q = statistics.quantiles(ips, n=4) if len(ips) > 1 else [ips[0]] * 3
            d.update(median_img_s=statistics.median(ips), min_img_s=min(ips), max_img_s=max(ips),
                     p25_img_s=q[0], p75_img_s=q[2], median_ms=1000 * statistics.median(self.seconds))
        return d


# ----------------------------------------------------------------------------------------------- environment
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    """What a reader needs to reproduce or discount the numbers."""
    import timm

    env = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
           "platform": platform.platform(), "device": device, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads()}
    if hasattr(os, "getloadavg"):
        env["loadavg_1m_start"] = round(os.getloadavg()[0], 2)
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return env


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: str, dtype: torch.dtype, n: Optional[int] = None, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n @ n x n matmul: the machine's practical peak for MFU."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # first call is warm-up
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ------------------------------------------------------------------------------------------------ models
def build_model(case: Case) -> tuple[nn.Module, str]:
    """The model of a case and its task ('cls' -> logits, 'pretrain' -> output with .loss)."""
    if case.family == "vit":
        import timm

        return timm.create_model(f"vit_{case.size}_patch16_224", pretrained=False, img_size=case.img_size,
                                 num_classes=1000), "cls"
    import armvision

    if case.family == "arm":
        return armvision.create_classifier(case.size, num_classes=1000, img_size=case.img_size), "cls"
    if case.family == "arm-pretrain":
        return armvision.create_pretrainer(case.size, img_size=case.img_size), "pretrain"
    raise ConfigError(f"unknown model family {case.family!r}; choose from {', '.join(FAMILIES)}")


def check_img_size(family: str, img_size: int, patch: int = 16, cluster: int = 4) -> Optional[str]:
    """Why a family cannot run at img_size (None when it can)."""
    if img_size % patch:
        return f"{img_size} px is not a multiple of the {patch} px patch"
    if family == "arm-pretrain":
        side = patch * cluster
        if img_size % side or img_size // side < 2:
            return f"pretrainer needs a multiple of {side} px (clusters of {cluster}x{cluster} patches), >= {2 * side}"
    return None


def _loss(model: nn.Module, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out.loss if task == "pretrain" else F.cross_entropy(out, y)


def _attn_flops(q: tuple, k: tuple, v: tuple) -> int:
    """Two batched matmuls of attention: (s_q x d) @ (d x s_k) and (s_q x s_k) @ (s_k x d_v)."""
    *bh, s_q, d = q
    n = 1
    for x in bh:
        n *= x
    return 2 * n * s_q * k[-2] * d + 2 * n * s_q * k[-2] * v[-1]


def _sdpa_cpu_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return _attn_flops(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attn_flops(query, key, value)  # grads of q, k, v and of the scores: 4 matmuls


def flop_counter():
    """FlopCounterMode, plus CPU fused attention, which torch's table leaves at zero (torch 2.x)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_forward
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward
    return FlopCounterMode(display=False, custom_mapping=mapping)


@contextlib.contextmanager
def reference_scan():
    """Run the selective scan and causal conv through armvision's sequential reference while counting FLOPs.

    The fast paths do extra matmuls of their own (e.g. cumulative sums as triangular matmuls) that FlopCounterMode
    would count as model FLOPs, and fused CUDA kernels hide everything; the reference does only the model's math
    (its read-out y = C.h is counted as a batched matmul), so counts do not depend on the backend.
    """
    name = "ARMVISION_SCAN_BACKEND"
    old = os.environ.get(name)
    os.environ[name] = "ref"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def scan_flops(model: nn.Module, run_forward) -> float:
    """Analytic FLOPs of the selective scan's elementwise work in one forward, found with hooks on Mamba mixers.

    A mixer is a module owning A_log-style parameters of shape (d_inner, d_state), one per scan direction.
    Per direction, token and (channel, state) pair the recurrence does dt*A, exp, dt*u*B, and the state update
    h*dA + dBu (2): 6 FLOPs; per (token, channel) softplus(dt), the D skip and the silu(z) gate add ~5 and the
    depthwise causal conv 2*d_conv (the reference does it elementwise). The read-out y = C.h (2 per state) is
    left out: under `reference_scan` it is a batched matmul that FlopCounterMode counts.
    """
    total = 0.0
    hooks = []

    def is_a_log(name: str, p: torch.Tensor) -> bool:
        return name.startswith("A") and name.endswith("log") and p.ndim == 2

    def hook(mod, args, kwargs, _out):
        nonlocal total
        x = args[0] if args else next(iter(kwargs.values()))  # (B, L, D)
        for name, p in mod.named_parameters(recurse=False):
            if is_a_log(name, p):
                d_inner, d_state = p.shape
                total += x.shape[0] * x.shape[1] * d_inner * (6 * d_state + 5 + 2 * getattr(mod, "d_conv", 4))

    for mod in model.modules():
        if any(is_a_log(n, p) for n, p in mod.named_parameters(recurse=False)):
            hooks.append(mod.register_forward_hook(hook, with_kwargs=True))
    try:
        run_forward()
    finally:
        for h in hooks:
            h.remove()
    return total


# ----------------------------------------------------------------------------------------------- memory
def _proc_status(key: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Give memory freed by Python/torch back to the OS (glibc), so it cannot hide inside the baseline."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory growth between start() and peak_mb(), see the module docstring."""

    def __init__(self, device: str):
        self.device = device
        self.base = 0

    def start(self) -> None:
        gc.collect()
        _malloc_trim()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        except OSError:
            pass
        self.base = _proc_status("VmRSS") or 0

    def peak_mb(self) -> Optional[float]:
        if self.device.startswith("cuda"):
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        hwm = _proc_status("VmHWM")
        return None if hwm is None else (hwm - self.base) / 2**20


# ----------------------------------------------------------------------------------------------- measure
def measure(case: Case) -> Result:
    """Time one case in this process (memory is exact only in a fresh process on CPU)."""
    res = Result(case)
    if case.threads:
        torch.set_num_threads(case.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[case.dtype]
    autocast = dtype != torch.float32
    dev = case.device
    torch.manual_seed(0)
    x = torch.randn(case.batch_size, 3, case.img_size, case.img_size, device=dev)
    y = torch.randint(0, 1000, (case.batch_size,), device=dev)
    train = case.mode == "train"

    def setup() -> tuple[nn.Module, str, Optional[torch.optim.Optimizer]]:
        model, task = build_model(case)
        model.to(dev).train(train)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05) if train else None
        return model, task, opt

    def step(inp: torch.Tensor, lab: torch.Tensor) -> None:
        with torch.autocast(device_type=dev.split(":")[0], dtype=dtype, enabled=autocast):
            if not train:
                with torch.no_grad():
                    model(inp)
                return
            loss = _loss(model, task, inp, lab)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    # priming: one batch-1 step of a throw-away copy, so that kernel libraries paged in on first use are resident
    # before the memory baseline (on CPU they would otherwise count as the model's memory)
    model, task, opt = setup()
    step(x[:1], y[:1])
    del model, opt
    # the peak in the same conditions as the timing below
    res.matmul_peak_flops = matmul_peak_flops(dev, dtype, n=case.peak_n, repeats=3)
    mem = PeakMemory(dev)
    mem.start()
    model, task, opt = setup()
    res.params_m = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    for _ in range(case.warmup):
        step(x, y)
    _sync(dev)
    for _ in range(case.repeats):
        t0 = time.perf_counter()
        step(x, y)
        _sync(dev)
        res.seconds.append(time.perf_counter() - t0)
    res.peak_mem_mb = mem.peak_mb()

    # FLOPs on a batch of one, after timing so they do not disturb memory or timing
    x1, y1 = x[:1], y[:1]
    model.zero_grad(set_to_none=True)
    with reference_scan(), flop_counter() as counter:
        if train:
            _loss(model, task, x1, y1).backward()
        else:
            with torch.no_grad():
                model(x1)
    res.counted_gflop = counter.get_total_flops() / 1e9
    with torch.no_grad():
        fwd_scan = scan_flops(model, lambda: model(x1))
    res.scan_gflop = fwd_scan * (3 if train else 1) / 1e9  # backward of the recurrence ~ 2x its forward
    return res


def measure_isolated(case: Case) -> Result:
    """Run `measure` in a fresh Python process (exact CPU peak memory, one model's crash stays contained)."""
    code = "import sys, armvision.bench.model as m; sys.exit(m._worker(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(asdict(case))], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return Result(case, error=lines[-1] if lines else f"worker exited with {proc.returncode}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data.pop("case")
    return Result(case, **data)


def _worker(case_json: str) -> int:
    res = measure(Case(**json.loads(case_json)))
    d = asdict(res)
    print(json.dumps(d))
    return 0


# ----------------------------------------------------------------------------------------------- report
def _fmt(v: Optional[float], spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict], peak_flops: float) -> str:
    """Markdown table of the results: one line per (model, px, mode)."""
    head = ("| model | px | batch | mode | params (M) | img/s median | min-max | ms/iter | peak mem (MB) "
            "| GFLOP/img (counted + scan) | MFU | vs ViT |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c = r["case"]
        name = {"arm": "ARM", "arm-pretrain": "ARM-pretrain", "vit": "ViT"}[c["family"]] + f"-{c['size']}"
        if r.get("error"):
            out.append(f"| {name} | {c['img_size']} | {c['batch_size']} | {c['mode']} | error: {r['error']} "
                       + "|" * 8)
            continue
        flop = (r["counted_gflop"] or 0) + (r["scan_gflop"] or 0)
        mfu = flop * 1e9 * r["median_img_s"] / peak_flops
        out.append(
            f"| {name} | {c['img_size']} | {c['batch_size']} | {c['mode']} | {_fmt(r['params_m'], '.1f')} "
            f"| {r['median_img_s']:.2f} | {r['min_img_s']:.2f}-{r['max_img_s']:.2f} | {r['median_ms']:.0f} "
            f"| {_fmt(r['peak_mem_mb'], '.0f')} | {r['counted_gflop']:.2f} + {r['scan_gflop']:.3f} "
            f"| {100 * mfu:.1f}% | {r.get('vs_vit', '')} |")
    return "\n".join(out)


def _add_vit_ratio(rows: list[dict]) -> None:
    """ARM rows get their images/s as a multiple of the ViT of the same size, px, batch and mode."""
    key = lambda c: (c["size"], c["img_size"], c["batch_size"], c["mode"])  # noqa: E731
    vit = {key(r["case"]): r for r in rows if r["case"]["family"] == "vit" and not r.get("error")}
    for r in rows:
        v = vit.get(key(r["case"]))
        if r["case"]["family"] != "vit" and v and not r.get("error"):
            r["vs_vit"] = f"{r['median_img_s'] / v['median_img_s']:.2f}x"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="model families (default: all); ARM = classifier, ARM-pretrain = pretrainer, ViT = timm")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES, help="sizes (default: all)")
    parser.add_argument("--img-size", nargs="+", type=int, default=None,
                        help="image sizes for every model (default: 224, pretrainer 192)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per case")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations per case")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="bfloat16 = autocast (weights stay float32)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="one fresh process per case (default: on for CPU, for exact peak memory)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test in seconds: tiny sizes, 64 px (pretrainer 128), batch 2, 1 warm-up, "
                        "2 repeats, 1024 matmul for the peak")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write all results and the environment")


def cases_from_args(args: argparse.Namespace) -> tuple[list[Case], list[str]]:
    """The cases to run and notes on the combinations skipped."""
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available here; use --device cpu")
    sizes, batch, warmup, repeats = args.sizes, args.batch_size, args.warmup, args.repeats
    if args.quick:
        sizes, batch, warmup, repeats = ["tiny"], 2, 1, 2
    for flag, v in (("--batch-size", batch), ("--repeats", repeats)):
        if v < 1:
            raise ConfigError(f"{flag} must be >= 1, got {v}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    cases, notes = [], []
    for fam in args.models:
        imgs = args.img_size or [(QUICK_IMG if args.quick else DEFAULT_IMG)[fam]]
        for size in sizes:
            for img in imgs:
                why = check_img_size(fam, img)
                if why:
                    notes.append(f"skipped {fam}-{size} at {img} px: {why}")
                    continue
                for mode in args.modes:
                    cases.append(Case(fam, size, img, batch, mode, warmup, repeats, device, args.dtype, args.threads,
                                      peak_n=1024 if args.quick else None))
    if not cases:
        raise ConfigError("no case left to run: " + "; ".join(notes))
    return cases, notes


def run(args: argparse.Namespace) -> int:
    cases, notes = cases_from_args(args)
    device = cases[0].device
    if args.threads:
        torch.set_num_threads(args.threads)
    isolate = args.isolate if args.isolate is not None else device == "cpu"
    env = environment(device)
    env["isolated_processes"] = isolate
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    peak_n = cases[0].peak_n
    peak = matmul_peak_flops(device, dtype, n=peak_n)
    print(f"# {env['device']} ({env.get('gpu', env['cpu'])}), torch {env['torch']}, {env['torch_threads']} threads, "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s ({args.dtype}) at start", flush=True)
    rows = []
    for case in cases:
        print(f"# {case.name} {case.img_size}px {case.mode} ...", flush=True)
        try:
            res = measure_isolated(case) if isolate else measure(case)
        except (RuntimeError, ValueError) as e:  # one model failing should not lose the others' numbers
            res = Result(case, error=str(e).splitlines()[0])
        rows.append(res.summary())
    _add_vit_ratio(rows)
    # the machine's peak = the best of all measurements (start, end, one per case): on a shared machine any single
    # measurement can be depressed by other processes, which would inflate MFU
    peak = max([peak, matmul_peak_flops(device, dtype, n=peak_n)] + [r["matmul_peak_flops"] or 0 for r in rows])
    print(f"# matmul peak over the run (best of {len(rows) + 2} measurements): {peak / 1e9:.1f} GFLOP/s; MFU uses it")
    if hasattr(os, "getloadavg"):
        env["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(table(rows, peak))
    for n in notes:
        print(f"# {n}")
    if args.json:
        out = {"argv": sys.argv, "environment": env, "matmul_peak_flops": peak, "results": rows, "notes": notes}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
