"""GPU check in one command: scan correctness per backend, scan speed, ARM-B vs ViT-B, a short ARM-B pretraining run.

    python -m armvision.bench.gpu_check --out runs/gpu_check          # on a CUDA machine (under 6 minutes, H200)
    python -m armvision.bench.gpu_check --out /tmp/gc --dry-run       # anywhere: tiny shapes, CPU, seconds
    benchmarks/gpu_check.sh runs/gpu_check                            # the same, from a checkout

Sections (each in its own try/except: one failure is recorded and the rest still runs):
  1. correctness: every available selective-scan backend ("cuda" = mamba_ssm's kernel when importable, "triton",
     "torch" = the chunked PyTorch path) against the sequential reference, values and all gradients, fp32 and
     bf16, on the small cases of `armvision.bench.scan_check`.
  2. scan speed: forward and forward+backward at ARM-B's pretraining shape (batch 64, D 768, L 128, N 16, with z,
     D, delta_bias, softplus), per backend, timed with CUDA events; ratios between backends; and the 4-direction
     finetuning scan (batch 8, Dg 768, L 197, N 16) in one Triton launch vs 4 separate Triton calls.
  3. models: ARM-B classifier vs timm ViT-B at 224 px, batch 64, fp32 and bf16 autocast: forward images/s (eval,
     no grad), train-step images/s (forward + backward + AdamW), peak memory.
  4. pretraining: ARM-B pretrainer at 192 px on synthetic data, AdamW, bf16 autocast, a few warm-up steps then
     ~20 timed ones: steps/s, images/s, peak memory, and the ratio to the paper's budget (300 ImageNet-1k epochs in
     34 h: about 3,100 images/s in total).
Sections 1, 2 and 4 run first, section 3 last; once --budget-s (330 s) is spent the sections left are skipped.
The models are built on the scan backend `--model-backend` (default "triton"; their config's `scan_backend`); when
that fails, the error is recorded and the run is repeated with the automatic choice. On CUDA, section 3 also times
the ARM classifier with the mixer's directions in one Triton launch (`one_launch`: a child process started with
ARMVISION_TRITON_DIRECTIONS=1). TF32 matmuls are on in sections 3-4 only.
Writes report.json (also after each section) and report.md to --out. Measured on an H200: docs/gpu_check_h200.md.

Modules: common (timer, memory, backend fallback), scans (sections 1-2), models (sections 3-4), one_launch, report,
runner; the command line is armvision.cli.bench.gpu_check.
"""
from .common import PAPER_IMG_S, with_backend_fallback
from .report import markdown
from .runner import SECTIONS, GpuCheckOptions, make_config, run_gpu_check

__all__ = ["PAPER_IMG_S", "SECTIONS", "GpuCheckOptions", "make_config", "markdown", "run_gpu_check",
           "with_backend_fallback"]
