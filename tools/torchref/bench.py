#!/usr/bin/python3
"""PyTorch speed baseline for `slc bench`: full training steps on the CPU, fp32.

  OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tools/torchref/bench.py \
      --config testdata/configs/llama_20m.json --peft sltrain --rank 64 \
      --sp-ratio 0.03 --lora-alpha 32 --batch-size 8 --max-length 256 \
      --threads 2 --steps 3 --warmup 2

`slc bench --baseline torch` passes every model setting from the compiled
module's metadata. --target-modules (default attn,attention,mlp, the seed's)
makes SLTrain layers of the attention and MLP projections whose module names
contain one of them; --dtype float64 runs the model in double precision (the
default float32 is slc's training dtype).

One step = forward (mean next-token loss) + backward + AdamW step + zero_grad,
on random token ids (a fresh batch per step, fixed seed). --warmup steps run
untimed first; the JSON line on stdout reports the median of the --steps timed
steps: tokens_per_s = B·L / step_s_median (and tokens_per_s_best from the fastest
step, the steadier figure on a shared machine; step_cpu_s_median is the process's
CPU time per step, all threads together), params (parameter elements, buffers
excluded) and sltrain_layers (SpLoRaLinear modules), which slc bench checks
against its own model.

Threads: torch.set_num_threads(threads) sets the OpenMP pool; Debian's torch does
its matrix products in OpenBLAS (libblas.so.3 -> openblas-pthread), whose pool is
sized from OPENBLAS_NUM_THREADS when the library loads, so this script sets that
(and OMP_NUM_THREADS) before importing torch. It also sets OPENBLAS_CORETYPE
(--openblas-coretype, default SkylakeX: OpenBLAS's AVX-512 kernels; "env" keeps
the environment's value); the JSON line reports the core OpenBLAS actually uses.
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

PROG = "torchref bench"


def blas_info():
    """Which BLAS this process loaded (from /proc/self/maps) and, for OpenBLAS, its config and core."""
    libs = set()
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if any(k in base for k in ("blas", "mkl", "lapack", "dnnl")):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    info = {"libs": sorted(libs)}
    try:
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_config.restype = ctypes.c_char_p
        ob.openblas_get_corename.restype = ctypes.c_char_p
        info["openblas_config"] = ob.openblas_get_config().decode()
        info["openblas_core"] = ob.openblas_get_corename().decode()
        info["openblas_threads"] = ob.openblas_get_num_threads()
    except (OSError, AttributeError):
        pass
    return info


def main(argv=None):
    sys.dont_write_bytecode = True
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--config", "--model-config", "--model_config", required=True)
    a("--peft", "--peft-model", "--peft_model", choices=("sltrain", "full"), default="sltrain")
    a("--rank", type=int, default=128)
    a("--sp-ratio", "--sp_ratio", type=float, default=0.03)
    a("--lora-alpha", "--lora_alpha", type=float, default=32.0)
    a("--target-modules", "--target_modules", default=None,
      help="comma-separated names: SLTrain layers for the projections whose module name contains one (default attn,attention,mlp)")
    a("--dtype", choices=("float32", "float64", "bfloat16", "bf16-mixed"), default="float32", help="the model's dtype (bfloat16: built in float32 and initialised, then model.to(torch.bfloat16), as the seed's --dtype bfloat16; PyTorch's own bf16 CPU kernels and AdamW; bf16-mixed: a float32 model whose forward pass runs under torch.autocast('cpu', dtype=torch.bfloat16), PyTorch's own mixed precision, the baseline of slc's bf16-mixed)")
    a("--batch-size", "--batch_size", type=int, default=8)
    a("--max-length", "--max_length", type=int, default=256)
    a("--threads", type=int, default=2)
    a("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the model and batches on the GPU, steps timed after torch.cuda.synchronize()")
    a("--steps", type=int, default=3, help="timed steps")
    a("--warmup", type=int, default=2, help="untimed steps first")
    a("--lr", type=float, default=1e-3)
    a("--seed", type=int, default=0)
    a("--openblas-coretype", default="SkylakeX",
      help='OPENBLAS_CORETYPE to load OpenBLAS with (default SkylakeX, its AVX-512 kernels); "env" keeps the environment\'s value')
    a("--verbose", action="store_true", help="print each step's time on stderr")
    args = p.parse_args(argv)
    if args.threads < 1 or args.steps < 1 or args.warmup < 0 or args.batch_size < 1 or args.max_length < 2:
        p.error("--threads, --steps, --batch-size must be >= 1, --warmup >= 0, --max-length >= 2")
    targets = None
    if args.target_modules is not None:
        targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
        if not targets:
            p.error("--target-modules: no module names")

    if args.openblas_coretype != "env":
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch

    import model as torchref
    from model import ConfigError, LlamaConfig, LlamaForCausalLM, SLTrainOptions, SpLoRaLinear, count_params, init_weights

    if targets is not None:
        # model.py's projections consult this module-level rule as they are built.
        torchref.TARGET_KEYS = targets
    dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.float32, "bf16-mixed": torch.float32}[args.dtype]
    torch.set_num_threads(args.threads)
    try:
        cfg = LlamaConfig.from_json(args.config)
        sl = SLTrainOptions(args.rank, args.sp_ratio, args.lora_alpha) if args.peft == "sltrain" else None
        model = LlamaForCausalLM(cfg, sl, dtype)
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    gen = torch.Generator().manual_seed(args.seed)
    init_weights(model, gen)
    if args.dtype == "bfloat16":
        model.to(dtype=torch.bfloat16)  # the seed: after the SLTrain wrapping; sparse_index stays int64
        model.dtype, model._rope = torch.bfloat16, {}  # cos/sin cast to bf16, as the seed's buffers are
    if args.device == "cuda":
        model.to("cuda")
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()

    times, cpu = [], []
    for i in range(args.warmup + args.steps):
        ids = torch.randint(0, cfg.vocab_size, (args.batch_size, args.max_length), generator=gen).to(args.device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        c0, t0 = time.process_time(), time.perf_counter()
        if args.dtype == "bf16-mixed":
            with torch.autocast(args.device, dtype=torch.bfloat16):
                loss = model(ids)
        else:
            loss = model(ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        dc = time.process_time() - c0
        if args.verbose:
            print(f"step {i}{' (warm-up)' if i < args.warmup else ''}: {dt:.3f} s, loss {loss.item():.4f}", file=sys.stderr)
        if i >= args.warmup:
            times.append(dt)
            cpu.append(dc)
    med = statistics.median(times)
    tokens = args.batch_size * args.max_length
    out = {
        "tokens_per_s": tokens / med,
        "step_s_median": med,
        "params": count_params(model),
        "sltrain_layers": sum(isinstance(m, SpLoRaLinear) for m in model.modules()),
        "step_s": times,
        "tokens_per_s_best": tokens / min(times),
        "step_cpu_s_median": statistics.median(cpu),
        "peft": args.peft,
        "dtype": args.dtype,
        "device": args.device,
        "config": args.config,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "threads": args.threads,
        "torch": torch.__version__,
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "blas": blas_info(),
    }
    if args.device == "cuda":
        out["max_memory_allocated"] = torch.cuda.max_memory_allocated()
        out["gpu"] = torch.cuda.get_device_name()
    if sl is not None:
        out.update(rank=args.rank, sp_ratio=args.sp_ratio, lora_alpha=args.lora_alpha,
                   target_modules=list(torchref.TARGET_KEYS))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
