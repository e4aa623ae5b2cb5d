"""Compares an slc run with a tools/torchref run of the same training.

usage: xcheck_compare.py SLC.jsonl TORCH.jsonl SLC.safetensors TORCH32.safetensors TORCH64.safetensors
       xcheck_compare.py --dtype bfloat16|bf16-mixed [--weight-decay WD]
           SLC.jsonl TORCH.jsonl SLC.safetensors TORCH.safetensors TORCH64.safetensors TORCH64.jsonl
       xcheck_compare.py --selftest

float32 (the first form): per-update losses must agree with PyTorch's float32 run to
1e-5 relative, and the learning rates exactly. Final weights must agree to float32
rounding, with the float64 PyTorch run as the exact answer: for every tensor, the 90th
percentile of slc's element errors against it must be at most 4× that of PyTorch
float32 (plus 1e-8·max|w|), and no element may be off by more than 1e-5·max|w|. A
percentile, not the max, carries the 4× rule because AdamW divides each update by √v:
a gradient entry that cancels to nearly zero turns fp32 summation-order noise into a
visible difference in that one weight (seen: one element of 64 at 8e-7 while the rest
match PyTorch's own error).

bfloat16 / bf16-mixed (the second form): bf16 results cannot agree bit for bit across
implementations, so both slc and PyTorch (tools/torchref --dtype bfloat16 or
bf16-mixed) are measured against the same float64 run — for bfloat16 the float64 run
of the bf16-rounded init (torchref --dtype float64 --round-init bf16), for bf16-mixed
the plain float64 run (its master weights start at the fp32 init) — and slc's error
must stay within a small multiple of PyTorch's own:
- learning rates: slc's and PyTorch's equal the float64 run's (1e-9 relative);
- loss, every update s: |L_slc(s) − L64(s)| ≤ 4·max_s' |L_torch(s') − L64(s')| + half an
  ulp of L64(s) in the loss's dtype (bf16, or fp32 for mixed: the bf16 loss is itself a
  rounded number, 2^-6 apart near 3.5); PyTorch's worst update is the scale because the
  per-update errors of a short run are a few rounding quanta and jump between updates;
- weights, every tensor: p90|w_slc − w64| ≤ 4·p90|w_torch − w64| + f·max|w64|
  (f = 2^-10 for bf16, about a sixth of an ulp at max|w| like the fp32 rule's 1e-8;
  1e-8 for mixed, whose weights are fp32);
- weights, every element: |w_slc − w64| ≤ 2·Σ_u lr_u·(1.05·R(u+1) + wd·max|w64|) +
  n·u_w·max|w64|: the farthest AdamW can carry two runs apart from the same start
  (R(t) = (1−β1)/√(1−β2)·√(Σ_{k<t}(β1²/β2)^k)·√(1−β2^t)/(1−β1^t) bounds |m̂/(√v̂+ε)|
  by Cauchy–Schwarz: 1 at t = 1, 1.03 at t = 8; 1.05 allows for bf16 rounding of m, v
  and the denominator; u_w = 2^-8 (bf16) or 2^-24 (mixed) covers rounding the stored
  weight once per update; wd is --weight-decay, 0 by default: pass the run's);
- integer tensors (sparse_index) equal exactly; every slc value finite.
Why 4× at p90: two correct bf16 implementations round at different points (fused vs
per-op RMSNorm, SiLU·up, the attention scale, AdamW's lerp vs mul+add), so their errors
against float64 are independent draws of the same size. Measured on the tiny LLaMA
(the xcheck setup: 8 updates, full and SLTrain, 6 inits; torchref against variants of
itself that round at other points), the ratio of p90 errors per tensor was at most 1.9
(bf16) and 2.3 (mixed), and of the worst loss errors 1.5 and 2.0: 4× keeps about 2×
of headroom. The max element is not held to a multiple of PyTorch's max: per tensor
that ratio reached 21 (bf16) and 12 (mixed) between correct variants (a weight whose
gradient nearly cancels moves ±lr on a rounding's whim), hence the AdamW bound.
What it catches: an slc less accurate than PyTorch by more than 4× in the bulk of a
tensor, a wrong or missing gradient (lora_B's gradient dropped: 20× the tolerance), a
NaN, an lr schedule or index difference. What it does not: on this short run the
weight errors are dominated by bf16's rounding of the weights and AdamW's sign-like
steps, so GEMMs that truncate instead of rounding, or accumulate in bf16 (K ≤ 24),
stay within 0.6 of the tolerance. The check is one-sided: an slc more accurate than
PyTorch-bf16 passes.
Exits 1 when a check fails.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "torchref"))
import numpy as np  # noqa: E402
from safetensors_io import load as read_safetensors  # noqa: E402

# Low-precision modes: (significand bits of the reported loss, unit roundoff of the
# stored weights, p90 floor factor).
LOW_MODES = {
    "bfloat16": (8, 2.0**-8, 2.0**-10),
    "bf16-mixed": (24, 2.0**-24, 1e-8),
}
MODE_ALIASES = {"bf16": "bfloat16"}
RATIO = 4.0  # the multiple of PyTorch's own error (p90 of weights, worst loss)
BETA1, BETA2 = 0.9, 0.999  # AdamW's betas (DESIGN.md)
ROUNDING_ALLOWANCE = 1.05  # on the AdamW step bound, for bf16 rounding of m, v, the denominator


def losses(path):
    out = {}
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if "loss" in o and "step" in o:
                out[int(o["step"])] = (float(o["loss"]), float(o.get("lr", 0)))
    return out


def main_fp32(argv):
    slc_m, torch_m, slc_w, torch_w, exact_w = argv[1:6]
    a, b = losses(slc_m), losses(torch_m)
    ok = True
    if sorted(a) != sorted(b) or not a:
        print(f"  steps differ: slc {sorted(a)} torch {sorted(b)}")
        return 1
    worst = 0.0
    for s in sorted(a):
        (la, lra), (lb, lrb) = a[s], b[s]
        e = abs(la - lb) / abs(lb)
        worst = max(worst, e)
        flag = "" if e <= 1e-5 else "  <-- differs"
        print(f"  step {s:3d}  loss slc {la:.7f}  torch {lb:.7f}  rel {e:.2e}  lr slc {lra:.6g} torch {lrb:.6g}{flag}")
        ok &= e <= 1e-5 and abs(lra - lrb) <= 1e-9 * max(1.0, abs(lrb))
    wa, wb, w0 = read_safetensors(slc_w), read_safetensors(torch_w), read_safetensors(exact_w)
    if set(wa) != set(wb):
        print(f"  tensor names differ: only slc {sorted(set(wa) - set(wb))}, only torch {sorted(set(wb) - set(wa))}")
        return 1
    wworst, wname = 0.0, ""
    for name in sorted(wa):
        x, y = np.asarray(wa[name], dtype=np.float64), np.asarray(wb[name], dtype=np.float64)
        if x.shape != y.shape:
            print(f"  {name}: shape {x.shape} vs {y.shape}")
            ok = False
            continue
        if x.size == 0:
            continue
        z = np.asarray(w0[name], dtype=np.float64)
        scale = float(np.max(np.abs(z)))
        e_slc = float(np.percentile(np.abs(x - z), 90))
        e_t32 = float(np.percentile(np.abs(y - z), 90))
        tol = 4 * e_t32 + 1e-8 * scale
        r = e_slc / tol if tol > 0 else (0.0 if e_slc == 0 else float("inf"))
        if r > wworst:
            wworst, wname = r, name
        if r > 1:
            print(f"  {name}: slc's p90 error {e_slc:.3e} vs float64, PyTorch fp32's {e_t32:.3e}: {r:.2f}× the tolerance")
            ok = False
        m = float(np.max(np.abs(x - z)))
        if m > 1e-5 * scale:
            print(f"  {name}: an element is off by {m:.3e} > 1e-5·max|w| = {1e-5 * scale:.3e}")
            ok = False
    print(f"  worst loss rel error {worst:.2e}; worst weight p90 error {wworst:.2f} of its tolerance ({wname})")
    print("  OK" if ok else "  FAILED")
    return 0 if ok else 1


# ---- bfloat16 and bf16-mixed -------------------------------------------------


def adam_step_bound(t, beta1=BETA1, beta2=BETA2):
    """R(t): an upper bound of |m̂_t / √v̂_t| for Adam at step t ≥ 1, for any gradients (Cauchy–Schwarz)."""
    r = beta1 * beta1 / beta2
    s = math.sqrt(sum(r**k for k in range(t)))
    return (1 - beta1) / math.sqrt(1 - beta2) * s * math.sqrt(1 - beta2**t) / (1 - beta1**t)


def travel_bound(lrs, weight_decay, scale, weight_unit):
    """The largest |w_a − w_b| two AdamW runs from the same start can reach after these updates."""
    n = len(lrs)
    move = sum(lr * (ROUNDING_ALLOWANCE * adam_step_bound(u + 1) + weight_decay * scale) for u, lr in enumerate(lrs))
    return 2 * move + n * weight_unit * scale


def half_ulp(x, bits):
    """Half the spacing of the floats with `bits` significand bits at |x| (the largest error of one rounding)."""
    x = abs(x)
    return 0.0 if x == 0 or not math.isfinite(x) else 2.0 ** (math.floor(math.log2(x)) - bits)


def _ratio(err, tol):
    return err / tol if tol > 0 else (0.0 if err == 0 else float("inf"))


def compare_low(mode, slc_m, torch_m, exact_m, slc_w, torch_w, exact_w, weight_decay=0.0, out=print):
    """The bf16 / bf16-mixed check (see the module docstring) on loaded data.

    *_m: {step: (loss, lr)}; *_w: {name: array}. Returns True when every check passes;
    prints one line per failure and a summary through out().
    """
    loss_bits, weight_unit, floor = LOW_MODES[mode]
    ok = True
    steps = sorted(exact_m)
    if not steps or sorted(slc_m) != steps or sorted(torch_m) != steps:
        out(f"  steps differ: slc {sorted(slc_m)} torch {sorted(torch_m)} float64 {steps}")
        return False
    e_t = {s: abs(torch_m[s][0] - exact_m[s][0]) for s in steps}
    scale_t = max(e_t.values())
    worst_loss = 0.0
    for s in steps:
        (ls, lrs), (lt, lrt), (l64, lr64) = slc_m[s], torch_m[s], exact_m[s]
        e_s = abs(ls - l64)
        tol = RATIO * scale_t + half_ulp(l64, loss_bits)
        r = _ratio(e_s, tol) if math.isfinite(ls) else float("inf")
        worst_loss = max(worst_loss, r)
        lr_ok = all(abs(x - lr64) <= 1e-9 * max(1.0, abs(lr64)) for x in (lrs, lrt))
        flag = "" if r <= 1 and lr_ok else ("  <-- loss error" if lr_ok else "  <-- lr differs")
        out(f"  step {s:3d}  loss slc {ls:.7f}  torch {lt:.7f}  float64 {l64:.7f}  err slc {e_s:.2e} torch {e_t[s]:.2e}  lr {lrs:.6g}{flag}")
        ok &= r <= 1 and lr_ok
    lrs = [exact_m[s][1] for s in steps]
    names = set(exact_w)
    if set(slc_w) != names or set(torch_w) != names:
        out(f"  tensor names differ: only slc {sorted(set(slc_w) - names)}, only torch {sorted(set(torch_w) - names)}, only float64 {sorted(names - set(slc_w))}")
        return False
    worst_w, worst_wname, worst_m, worst_mname = 0.0, "", 0.0, ""
    for name in sorted(names):
        xs, xt, x64 = (np.asarray(w[name]) for w in (slc_w, torch_w, exact_w))
        if not (xs.shape == xt.shape == x64.shape):
            out(f"  {name}: shapes slc {xs.shape} torch {xt.shape} float64 {x64.shape}")
            ok = False
            continue
        if xs.size == 0:
            continue
        if x64.dtype.kind in "iub":
            if not (np.array_equal(xs, x64) and np.array_equal(xt, x64)):
                out(f"  {name}: integer tensor differs from the float64 run's")
                ok = False
            continue
        xs, xt, x64 = (a.astype(np.float64) for a in (xs, xt, x64))
        if not np.isfinite(xs).all():
            out(f"  {name}: {int((~np.isfinite(xs)).sum())} non-finite value(s) in slc's weights")
            ok = False
            continue
        scale = float(np.max(np.abs(x64)))
        es, et = np.abs(xs - x64), np.abs(xt - x64)
        p_s, p_t = float(np.percentile(es, 90)), float(np.percentile(et, 90))
        r = _ratio(p_s, RATIO * p_t + floor * scale)
        if r > worst_w:
            worst_w, worst_wname = r, name
        if r > 1:
            out(f"  {name}: slc's p90 error {p_s:.3e} vs float64, PyTorch's {p_t:.3e}: {r:.2f}× the tolerance")
            ok = False
        bound = travel_bound(lrs, weight_decay, scale, weight_unit)
        m = float(es.max())
        rm = _ratio(m, bound)
        if rm > worst_m:
            worst_m, worst_mname = rm, name
        if rm > 1:
            i = int(np.argmax(es))
            out(f"  {name}: element {i} is off by {m:.3e} > {bound:.3e}, the farthest AdamW can carry two runs apart (PyTorch's worst: {float(et.max()):.3e})")
            ok = False
    out(
        f"  worst loss error {worst_loss:.2f} of its tolerance; worst weight p90 error {worst_w:.2f} of its tolerance ({worst_wname}); "
        f"worst element {worst_m:.2f} of the AdamW bound ({worst_mname})"
    )
    out("  OK" if ok else "  FAILED")
    return ok


def main_low(argv):
    mode, wd, rest = None, 0.0, []
    it = iter(argv[1:])
    for a in it:
        if a.startswith("--dtype"):
            mode = a.split("=", 1)[1] if "=" in a else next(it, None)
        elif a.startswith("--weight-decay"):
            wd = float(a.split("=", 1)[1] if "=" in a else next(it, "nan"))
        else:
            rest.append(a)
    mode = MODE_ALIASES.get(mode, mode)
    if mode == "float32" and len(rest) == 5:
        return main_fp32([argv[0], *rest])
    if mode not in LOW_MODES or len(rest) != 6 or not (wd >= 0 and math.isfinite(wd)):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    slc_m, torch_m, slc_w, torch_w, exact_w, exact_m = rest
    ok = compare_low(
        mode,
        losses(slc_m),
        losses(torch_m),
        losses(exact_m),
        read_safetensors(slc_w),
        read_safetensors(torch_w),
        read_safetensors(exact_w),
        weight_decay=wd,
    )
    return 0 if ok else 1


# ---- self-test ---------------------------------------------------------------


def selftest():
    """Checks the comparison logic on synthetic runs; exit 0 when every case ends as it must."""
    import tempfile

    from safetensors_io import save

    rng = np.random.default_rng(0)
    n_steps = 8
    lrs = [0.0, 0.005] + [0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * u / 6))) for u in range(6)]
    w64 = {
        "a.weight": rng.normal(0, 0.08, (64, 32)),
        "n.weight": 1 + rng.normal(0, 0.01, 32),
        "s.sparse_index": np.arange(0, 400, 7, dtype=np.int64),
        "s.sparse_value": rng.uniform(-0.25, 0.25, 57),
    }
    l64 = {s + 1: (3.47 - 0.02 * s + 0.003 * math.sin(s), lrs[s]) for s in range(n_steps)}
    sigma = {"bfloat16": 1.5e-3, "bf16-mixed": 3e-4}

    def noisy(k, mode, seed):
        g = np.random.default_rng(seed)
        return {n: (a if a.dtype.kind == "i" else a + k * sigma[mode] * g.standard_normal(a.shape)) for n, a in w64.items()}

    def loss_run(mode, k, seed):
        g = np.random.default_rng(seed)
        q = 2.0**-6 if mode == "bfloat16" else 0.0  # the bf16 loss's quantum near 3.5
        out = {}
        for s, (l, lr) in l64.items():
            v = l + k * 2e-3 * g.standard_normal()
            out[s] = ((round(v / q) * q) if q else v, lr)
        return out

    cases = []  # (name, mode, want_ok, slc_m, torch_m, slc_w, torch_w)
    for mode in LOW_MODES:
        tm, tw = loss_run(mode, 1, 1), noisy(1, mode, 2)
        cases.append(("same error as PyTorch", mode, True, loss_run(mode, 1, 3), tm, noisy(1, mode, 4), tw))
        cases.append(("2× PyTorch's error", mode, True, loss_run(mode, 2, 5), tm, noisy(2, mode, 6), tw))
        cases.append(("6× PyTorch's weight error", mode, False, loss_run(mode, 1, 7), tm, noisy(6, mode, 8), tw))
        worst = max(abs(tm[s][0] - l64[s][0]) for s in l64)
        m = {s: (l + (2 if s % 2 else -2) * worst, lr) for s, (l, lr) in l64.items()}
        cases.append(("loss off by 2× PyTorch's worst", mode, True, m, tm, noisy(1, mode, 9), tw))
        m = {s: (l + (6 if s == 5 else 0) * worst, lr) for s, (l, lr) in l64.items()}
        cases.append(("one loss off by 6× PyTorch's worst", mode, False, m, tm, noisy(1, mode, 10), tw))
        w = noisy(1, mode, 11)
        w["a.weight"] = w["a.weight"].copy()
        w["a.weight"][3, 5] += 0.2  # one element past the AdamW bound (~0.09), the p90 untouched
        cases.append(("one element beyond the AdamW bound", mode, False, loss_run(mode, 1, 12), tm, w, tw))
        w = noisy(1, mode, 13)
        w["s.sparse_value"] = w["s.sparse_value"].copy()
        w["s.sparse_value"][0] = float("nan")
        cases.append(("a NaN", mode, False, loss_run(mode, 1, 14), tm, w, tw))
        w = noisy(1, mode, 15)
        w["s.sparse_index"] = w["s.sparse_index"].copy()
        w["s.sparse_index"][2] += 1
        cases.append(("a moved sparse index", mode, False, loss_run(mode, 1, 16), tm, w, tw))
        m = loss_run(mode, 1, 17)
        m[4] = (m[4][0], m[4][1] * 1.001)
        cases.append(("a different lr", mode, False, m, tm, noisy(1, mode, 18), tw))
        w = noisy(1, mode, 19)
        del w["n.weight"]
        cases.append(("a missing tensor", mode, False, loss_run(mode, 1, 20), tm, w, tw))
    failures = 0
    for name, mode, want, sm, tm, sw, tw in cases:
        lines = []
        got = compare_low(mode, sm, tm, l64, sw, tw, w64, weight_decay=0.1, out=lines.append)
        verdict = "ok" if got == want else "WRONG"
        failures += got != want
        print(f"  {mode:10s} {name:36s} want {'pass' if want else 'fail'}, got {'pass' if got else 'fail'}: {verdict}")
        if got != want:
            print("\n".join("      " + line for line in lines))
    # the float32 form through files: identical runs pass, a 1e-4 loss error fails
    with tempfile.TemporaryDirectory() as d:

        def put(name, metrics, weights):
            with open(os.path.join(d, name + ".jsonl"), "w") as f:
                for s, (loss, lr) in metrics.items():
                    f.write(json.dumps({"step": s, "loss": loss, "lr": lr, "grad_norm": 1.0}) + "\n")
            save(os.path.join(d, name + ".safetensors"), {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in weights.items()})
            return os.path.join(d, name)

        t = put("torch", l64, w64)
        put("t64", l64, w64)
        bad = put("bad", {s: (l * (1 + 1e-4), lr) for s, (l, lr) in l64.items()}, w64)
        for name, slc, want in (("float32: identical runs", t, 0), ("float32: a 1e-4 loss error", bad, 1)):
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                rc = main_fp32(["x", slc + ".jsonl", t + ".jsonl", slc + ".safetensors", t + ".safetensors", os.path.join(d, "t64.safetensors")])
            failures += rc != want
            print(f"  {name:47s} want rc {want}, got {rc}: {'ok' if rc == want else 'WRONG'}")
    print("selftest OK" if not failures else f"selftest FAILED ({failures} case(s))")
    return 0 if not failures else 1


def main(argv):
    if len(argv) == 2 and argv[1] == "--selftest":
        return selftest()
    if any(a.startswith("--dtype") or a.startswith("--weight-decay") for a in argv[1:]):
        return main_low(argv)
    if len(argv) < 6:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return main_fp32(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
