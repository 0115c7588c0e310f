"""The mixer on the CPU kernel (all directions in one kernel call, orders by index) equals the mixer on the torch
backend (the API's per-direction fallback: one chunked PyTorch scan per direction), forward and every parameter
gradient, for 1, 2 and 4 directions."""
import pytest
import torch

from armvision.nn import MambaMixer
from armvision.ops import cpu_kernel

pytestmark = pytest.mark.skipif(cpu_kernel.load() is None, reason="needs the CPU kernel")


@pytest.mark.parametrize("directions,hw,cls_index", [
    (1, None, None), (2, None, None), (4, (3, 4), 6), (4, (3, 4), None), (4, (2, 5), 0), (4, (4, 3), 12)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_equals_per_direction_path(directions, hw, cls_index, dtype):
    torch.manual_seed(0)
    m = MambaMixer(24, directions=directions)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    L = hw[0] * hw[1] + (cls_index is not None) if hw else 13
    x = torch.randn(2, L, 24, requires_grad=True)
    results = {}
    for backend in ("torch", "cpu"):
        m.scan_backend = backend
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = m(x, hw, cls_index)
        results[backend] = (y, torch.autograd.grad((y.float() ** 2).sum(), [x, *m.parameters()]))
    (y_t, g_t), (y_c, g_c) = results["torch"], results["cpu"]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(y_c, y_t, **tol)
    for (name, _), a, b in zip([("x", None), *m.named_parameters()], g_c, g_t):
        torch.testing.assert_close(a, b, **tol, msg=lambda msg: f"gradient of {name}: {msg}")


def test_scan_orders_visit_every_position_once():
    m = MambaMixer(8, directions=4)
    orders = m.scan_orders(13, (3, 4), 6, "cpu")
    assert orders.shape == (4, 13)
    for row in orders:
        assert sorted(row.tolist()) == list(range(13))
    assert orders[2, 6] == 6 and orders[3, 6] == 6  # the cls token keeps its index in the column-major orders
    assert orders[1].tolist() == list(range(12, -1, -1))
