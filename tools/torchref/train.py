#!/usr/bin/python3
"""The cross-check trainer: the seed's SLTrain training loop on a fixed token stream.

Usage (see README.md):
  /usr/bin/python3 tools/torchref/train.py --config CFG --peft sltrain|full
      [--rank R --sp-ratio D --lora-alpha A] [--init INIT.safetensors]
      --tokens TOKENS.npy --batch-size B --total-batch-size T --max-length L
      --num-training-steps N --warmup-steps W --lr LR [--min-lr-ratio M]
      [--scheduler cosine|linear|linear-min] [--weight-decay WD]
      [--grad-clipping C] [--dtype float32|float64|bfloat16|bf16-mixed]
      [--round-init bf16] [--sdpa-precision bf16|fp32] [--threads K]
      --out OUT.safetensors --metrics OUT.jsonl

Document rows (--rows documents --pad-id P --eos-id E): the seed's
tokenizer(max_length=L, truncation=True, padding="max_length") rows: the stream is
cut into documents, each ending with E (a tail without E is the last one); row k
is document k truncated to L tokens and right-padded with P; labels are the ids
with P → -100 (the seed's training loop), and the loss is HF's cross-entropy with
ignore_index -100: the mean over the micro-batch's kept next-token positions.
Rows are taken B at a time, wrapping, as below.

Batching contract (shuffle off): the token stream is cut into rows of L tokens,
row k = T[k·L:(k+1)·L] (a tail shorter than L is dropped); micro-batch m takes
rows (m·B + j) mod R, j = 0..B−1 (R rows in all, wrapping at the end); update u
takes micro-batches u·G .. u·G+G−1, G = T/B. Each micro-batch's loss is divided
by G before backward; the reported step loss is the mean of the unscaled
micro-batch losses.

Dtypes (precision.py defines the low-precision ones op by op):
  float32, float64  every op in that dtype (float64: no fp32 upcasts at all);
  bfloat16 (bf16)   the seed's pure bf16: the model is built, loaded, then
                    model.to(bfloat16); bf16 parameters, gradients and AdamW state,
                    no master copy; outputs BF16;
  bf16-mixed        slc's mixed mode: fp32 master weights, gradients and AdamW state,
                    bf16 GEMM operands with fp32 accumulation, bf16 saved activations;
                    outputs F32.
--sdpa-precision fp32 (bfloat16 only) computes the seed's attention as torch >= 2.5's
math SDPA does (in fp32; the default is torch 2.0-2.4's op-by-op bf16).
--round-init bf16 rounds every float tensor of the init to bf16 (nearest even) before
training, whatever --dtype: a float64 run with it starts from exactly the values a
bfloat16 run starts from (the error reference of `make xcheck`'s bf16 cases).
"""

import argparse
import json
import math
import os
import sys
import tempfile

PROG = "torchref train"


class UsageError(Exception):
    """A bad flag value or input file; reported as one line, exit status 1."""


# ---- schedules -------------------------------------------------------------

SCHEDULERS = ("cosine", "linear", "linear-min")


def lr_lambda(kind, warmup, total, min_lr_ratio):
    """The multiplier λ(u) of update u (0-based), as LambdaLR applies it.

    cosine (the seed's get_cyclical_cosine_schedule_with_min_lr, one cycle of
    length total): u < w: u/max(1, w); else m + (1−m)·½(1 + cos(π·(u−w)/max(1, n−w))).
    linear (the seed's --scheduler linear = transformers'
    get_linear_schedule_with_warmup; min_lr_ratio is ignored, as in the seed):
    u < w: u/max(1, w); else max(0, (n−u)/max(1, n−w)).
    linear-min (not in the seed; a linear decay that stops at m):
    u < w: u/max(1, w); else m + (1−m)·max(0, (n−u)/max(1, n−w)).
    """
    w, n, m = warmup, total, min_lr_ratio

    def cosine(u):
        u = u % n  # the seed's cycle_step; u < n throughout a run
        if u < w:
            return float(u) / float(max(1, w))
        progress = float(u - w) / float(max(1, n - w))
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def linear(u):
        if u < w:
            return float(u) / float(max(1, w))
        return max(0.0, float(n - u) / float(max(1, n - w)))

    def linear_min(u):
        if u < w:
            return float(u) / float(max(1, w))
        return m + (1.0 - m) * max(0.0, float(n - u) / float(max(1, n - w)))

    return {"cosine": cosine, "linear": linear, "linear-min": linear_min}[kind]


# ---- data ------------------------------------------------------------------


def load_tokens(path, vocab_size):
    """Read a 1-D integer .npy token stream and return it as int64, ids checked against the vocabulary."""
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"{path}: cannot read as .npy: {e}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise UsageError(f"{path}: want a 1-D integer array, got {getattr(arr, 'dtype', type(arr))}{list(getattr(arr, 'shape', []))}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise UsageError(f"{path}: token ids must lie in [0, {vocab_size}), found [{arr.min()}, {arr.max()}]")
    return arr


class Batches:
    """Micro-batches of the batching contract: rows of L tokens, taken B at a time, wrapping."""

    def __init__(self, tokens, batch_size, max_length):
        import torch

        rows = len(tokens) // max_length
        if rows == 0:
            raise UsageError(f"the token stream has {len(tokens)} tokens, fewer than one row of max_length {max_length}")
        self.rows = torch.from_numpy(tokens[: rows * max_length].reshape(rows, max_length).copy())
        self.batch_size = batch_size
        self.next = 0  # index of the next micro-batch

    def take(self):
        import torch

        n = self.rows.shape[0]
        idx = torch.arange(self.next * self.batch_size, (self.next + 1) * self.batch_size) % n
        self.next += 1
        return self.rows.index_select(0, idx)


class DocumentBatches(Batches):
    """Document rows (see the module docstring): take() returns (ids, labels)."""

    def __init__(self, tokens, batch_size, max_length, pad_id, eos_id):
        import torch

        docs, start = [], 0
        for i, t in enumerate(tokens.tolist()):
            if t == eos_id:
                docs.append(tokens[start : i + 1])
                start = i + 1
        if start < len(tokens):
            docs.append(tokens[start:])
        if not docs:
            raise UsageError("the token stream has no documents")
        rows = torch.full((len(docs), max_length), pad_id, dtype=torch.int64)
        for k, d in enumerate(docs):
            d = torch.from_numpy(d[:max_length].astype("int64"))
            rows[k, : len(d)] = d
        self.rows = rows
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.next = 0

    def take(self):
        ids = super().take()
        labels = ids.clone()
        labels[labels == self.pad_id] = -100  # the seed: pad tokens out of the loss
        return ids, labels


# ---- parameters ------------------------------------------------------------

# HF checkpoints carry the rotary inverse frequencies as a buffer; the model
# computes them, so such entries are accepted and ignored.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def round_init_bf16(model):
    """Round every float parameter and buffer to bf16 (nearest even), in place, keeping the dtype.

    float64 values are rounded through float32 (exact for an F32, BF16 or F16 init).
    """
    import torch

    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.to(torch.float32).to(torch.bfloat16).to(t.dtype))


def load_init(model, path):
    """Load every parameter and buffer of model by name from a safetensors file.

    Errors on missing or unexpected names, wrong shapes, non-float parameters and
    sparse_index entries that are not a strictly increasing flat index into [out, in].
    Float tensors are converted to the model's dtype.
    """
    import numpy as np
    import torch

    from model import SpLoRaLinear
    from safetensors_io import SafetensorsError, load_with_dtypes

    try:
        tensors, dtypes, _ = load_with_dtypes(path)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    except SafetensorsError as e:
        raise UsageError(str(e)) from None
    state = model.state_dict()
    missing = [n for n in state if n not in tensors]
    extra = [n for n in tensors if n not in state and not n.endswith(IGNORED_SUFFIXES)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}")
        if extra:
            parts.append(f"unexpected {len(extra)} tensor(s): {', '.join(extra[:4])}{' …' if len(extra) > 4 else ''}")
        raise UsageError(f"{path}: {'; '.join(parts)} (check --peft, --rank, --sp-ratio against the file)")
    sizes = {n + ".sparse_index": m.out_features * m.in_features for n, m in model.named_modules() if isinstance(m, SpLoRaLinear)}
    with torch.no_grad():
        for name, dst in state.items():
            src = tensors[name]
            if list(src.shape) != list(dst.shape):
                raise UsageError(f"{path}: tensor {name!r}: shape {list(src.shape)}, the model wants {list(dst.shape)}")
            if dst.dtype == torch.int64:
                if src.dtype.kind not in "iu":
                    raise UsageError(f"{path}: tensor {name!r}: want an integer index (I64), got {dtypes[name]}")
                src = src.astype(np.int64)
                total = sizes.get(name)
                if total is not None and src.size:
                    if src[0] < 0 or src[-1] >= total or (src.size > 1 and not (np.diff(src) > 0).all()):
                        raise UsageError(f"{path}: tensor {name!r}: not a strictly increasing index into [0, {total})")
            elif src.dtype.kind != "f":
                raise UsageError(f"{path}: tensor {name!r}: want a float tensor, got {dtypes[name]}")
            dst.copy_(torch.from_numpy(np.ascontiguousarray(src)).to(dst.dtype))


def state_arrays(model):
    """The model's state_dict as numpy arrays, in state_dict order (bf16 widened to float32, exactly)."""
    import torch

    def arr(t):
        t = t.detach().cpu().contiguous()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()

    return {n: arr(t) for n, t in model.state_dict().items()}


def state_dtypes(model):
    """safetensors dtype names for the tensors state_arrays() widened: {name: "BF16"}."""
    import torch

    return {n: "BF16" for n, t in model.state_dict().items() if t.dtype == torch.bfloat16}


def write_text_atomic(path, text):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- training --------------------------------------------------------------


def global_grad_norm(params):
    """The L2 norm of all gradients together (what clip_grad_norm_ computes and returns)."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if grads[0].dtype == torch.bfloat16:  # as clip_grad_norm_bf16: b(‖(b(‖g_i‖))_i‖)
        norms = torch.stack([torch.linalg.vector_norm(g.detach().float()).to(torch.bfloat16) for g in grads])
        return float(torch.linalg.vector_norm(norms.float()).to(torch.bfloat16))
    return float(torch.norm(torch.stack([torch.norm(g.detach(), 2.0) for g in grads]), 2.0))


def train(model, batches, *, grad_accum, steps, lr, warmup, min_lr_ratio, scheduler, weight_decay, grad_clipping, on_step=None):
    """Run `steps` AdamW updates; returns the list of per-step metric dicts.

    Each update: G micro-batches, loss/G backward each; the global gradient norm
    (before clipping); optional clip_grad_norm_; AdamW step at lr·λ(u); LambdaLR
    step; zero_grad. "lr" in the metrics is the rate the update used. With bf16
    parameters (the seed's pure bf16) the optimizer is precision.Bf16AdamW and every
    step above runs on bf16 tensors (the loss, its /G, the grads, the norms).
    """
    import torch

    from precision import Bf16AdamW, bf16_div_scalar, clip_grad_norm_bf16

    params = [p for p in model.parameters() if p.requires_grad]
    bf16 = any(p.dtype == torch.bfloat16 for p in params)
    adamw = Bf16AdamW if bf16 else torch.optim.AdamW
    clip = clip_grad_norm_bf16 if bf16 else torch.nn.utils.clip_grad_norm_
    opt = adamw(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(scheduler, warmup, steps, min_lr_ratio))
    model.train()
    out = []
    for u in range(steps):
        losses = []
        for _ in range(grad_accum):
            batch = batches.take()
            loss = model(*batch) if isinstance(batch, tuple) else model(batch)
            (bf16_div_scalar(loss, grad_accum) if loss.dtype == torch.bfloat16 else loss / grad_accum).backward()
            losses.append(loss.item())
        norm = global_grad_norm(params)
        if grad_clipping > 0:
            clip(params, grad_clipping)
        used_lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        rec = {"step": u + 1, "loss": sum(losses) / grad_accum, "lr": used_lr, "grad_norm": norm}
        out.append(rec)
        if on_step is not None:
            on_step(rec)
    return out


DTYPES = ("float32", "float64", "bfloat16", "bf16", "bf16-mixed")


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description="Cross-check trainer: the seed's SLTrain/full-rank LLaMA training in PyTorch.")
    a = p.add_argument
    a("--config", "--model-config", "--model_config", required=True, help="HF/SLTrain LLaMA config JSON")
    a("--peft", "--peft-model", "--peft_model", choices=("sltrain", "full"), default="sltrain")
    a("--rank", type=int, default=128)
    a("--sp-ratio", "--sp_ratio", type=float, default=0.03)
    a("--lora-alpha", "--lora_alpha", type=float, default=32.0)
    a("--init", help="safetensors file with every parameter and buffer (HF names); without it, init per DESIGN.md from --seed")
    a("--seed", type=int, default=0, help="torch RNG seed for the init when --init is absent")
    a("--tokens", required=True, help=".npy 1-D integer token stream")
    a("--batch-size", "--batch_size", type=int, required=True, help="B, rows per micro-batch")
    a("--total-batch-size", "--total_batch_size", type=int, help="T, rows per update (default B); G = T/B")
    a("--max-length", "--max_length", type=int, required=True, help="L, tokens per row")
    a("--num-training-steps", "--num_training_steps", type=int, required=True)
    a("--warmup-steps", "--warmup_steps", type=int, default=0)
    a("--lr", type=float, required=True)
    a("--min-lr-ratio", "--min_lr_ratio", type=float, default=0.1)
    a("--scheduler", choices=SCHEDULERS, default="cosine")
    a("--weight-decay", "--weight_decay", type=float, default=0.0)
    a("--grad-clipping", "--grad_clipping", type=float, default=0.0, help="max global grad norm; 0 = off")
    a("--dtype", choices=DTYPES, default="float32", help="float32, float64, bfloat16 (alias bf16: the seed's pure bf16), bf16-mixed (slc's mixed mode)")
    a("--round-init", choices=("none", "bf16"), default="none", help="bf16: round the init to bf16 first (the float64 reference of a bf16 run)")
    a("--sdpa-precision", choices=("bf16", "fp32"), default="bf16",
      help="--dtype bfloat16 only: the seed's math SDPA op by op in bf16 (torch 2.0-2.4, default) or in fp32 (torch >= 2.5)")
    a("--threads", type=int, help="torch intra-op threads (and OPENBLAS_NUM_THREADS); default: torch's")
    a("--seed-padding-idx", action="store_true", help="the seed's embedding padding_idx = V−1 (row V−1 gets no gradient)")
    a("--rows", choices=("packed", "documents"), default="packed", help="documents: the seed's padded document rows with pad labels ignored (needs --pad-id and --eos-id)")
    a("--pad-id", type=int, help="--rows documents: the tokenizer's pad id")
    a("--eos-id", type=int, help="--rows documents: the tokenizer's end-of-text id, which ends each document")
    a("--out", required=True, help="final parameters and buffers, safetensors")
    a("--metrics", required=True, help="one JSON line per update: step, loss, lr, grad_norm")
    return p


def check_args(args):
    if args.dtype == "bf16":
        args.dtype = "bfloat16"
    if args.sdpa_precision != "bf16" and args.dtype != "bfloat16":
        raise UsageError("--sdpa-precision applies to --dtype bfloat16 only")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.total_batch_size is None:
        args.total_batch_size = args.batch_size
    if args.total_batch_size < args.batch_size or args.total_batch_size % args.batch_size:
        raise UsageError(f"--total-batch-size {args.total_batch_size} must be a positive multiple of --batch-size {args.batch_size}")
    if args.num_training_steps < 1:
        raise UsageError(f"--num-training-steps must be >= 1, got {args.num_training_steps}")
    if args.warmup_steps < 0:
        raise UsageError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    if not (args.lr >= 0 and math.isfinite(args.lr)):
        raise UsageError(f"--lr must be a finite number >= 0, got {args.lr}")
    if args.scheduler != "linear" and not 0 < args.min_lr_ratio <= 1:
        raise UsageError(f"--min-lr-ratio must be in (0, 1], got {args.min_lr_ratio}")
    if not (args.weight_decay >= 0 and math.isfinite(args.weight_decay)):
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if not (args.grad_clipping >= 0 and math.isfinite(args.grad_clipping)):
        raise UsageError(f"--grad-clipping must be >= 0, got {args.grad_clipping}")
    if args.rows == "documents" and (args.pad_id is None or args.eos_id is None):
        raise UsageError("--rows documents needs --pad-id and --eos-id")
    if args.rows == "documents" and args.dtype not in ("float32", "float64"):
        raise UsageError("--rows documents is built for --dtype float32 and float64")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    for flag, path in (("--out", args.out), ("--metrics", args.metrics)):
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise UsageError(f"{flag} {path}: directory {d} does not exist")


def run(args):
    check_args(args)
    if args.threads is not None:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # read when torch loads OpenBLAS
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from model import ConfigError, LlamaConfig, LlamaForCausalLM, SLTrainOptions, init_weights
    from safetensors_io import save

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        cfg = LlamaConfig.from_json(args.config)
        if not 2 <= args.max_length <= cfg.max_sequence_length:
            raise UsageError(f"--max-length must be in [2, {cfg.max_sequence_length}] (the config's max_sequence_length), got {args.max_length}")
        sl = SLTrainOptions(args.rank, args.sp_ratio, args.lora_alpha) if args.peft == "sltrain" else None
        dtype = torch.float64 if args.dtype == "float64" else torch.float32
        model = LlamaForCausalLM(cfg, sl, dtype, seed_padding_idx=args.seed_padding_idx)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.init:
        load_init(model, args.init)
    else:
        gen = torch.Generator().manual_seed(args.seed)
        init_weights(model, gen)
    if args.round_init == "bf16":
        round_init_bf16(model)
    if args.dtype == "bfloat16":
        model.to_bf16(sdpa_fp32=args.sdpa_precision == "fp32")  # the seed: model.to(dtype=torch.bfloat16) after the SLTrain wrapping
    elif args.dtype == "bf16-mixed":
        model.set_precision("mixed")
    tokens = load_tokens(args.tokens, cfg.vocab_size)
    if args.rows == "documents":
        batches = DocumentBatches(tokens, args.batch_size, args.max_length, args.pad_id, args.eos_id)
    else:
        batches = Batches(tokens, args.batch_size, args.max_length)

    lines = []
    train(
        model,
        batches,
        grad_accum=args.total_batch_size // args.batch_size,
        steps=args.num_training_steps,
        lr=args.lr,
        warmup=args.warmup_steps,
        min_lr_ratio=args.min_lr_ratio,
        scheduler=args.scheduler,
        weight_decay=args.weight_decay,
        grad_clipping=args.grad_clipping,
        on_step=lambda rec: lines.append(json.dumps(rec)),
    )
    meta = {"producer": "tools/torchref/train.py", "peft": args.peft, "dtype": args.dtype}
    if args.round_init != "none":
        meta["round_init"] = args.round_init
    if args.dtype == "bfloat16":
        meta["sdpa_precision"] = args.sdpa_precision
    save(args.out, state_arrays(model), dtypes=state_dtypes(model), metadata=meta)
    write_text_atomic(args.metrics, "".join(line + "\n" for line in lines))


def main(argv=None):
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
