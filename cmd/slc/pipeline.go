package main

import (
	"math"
	"strings"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// pipelineFlags are the flags of the pass pipeline, shared by slc compile and
// (later) slc train. The seed's snake_case spellings are aliases.
func pipelineFlags() []cli.Flag {
	d := passes.DefaultOptions()
	return []cli.Flag{
		&cli.StringFlag{Name: "peft", Aliases: []string{"peft_model"}, Value: d.PEFT, Usage: "`MODE`: sltrain (W = B·A·scale + S) or full (dense weights)"},
		&cli.IntFlag{Name: "rank", Aliases: []string{"lora_r"}, Value: d.Rank, Usage: "SLTrain rank `r` of B[out,r]·A[r,in]"},
		&cli.Float64Flag{Name: "sp-ratio", Aliases: []string{"sp_ratio"}, Value: d.SpRatio, Usage: "SLTrain sparsity `δ`: nnz = ⌊δ·in·out⌋ per layer (0 = low-rank only)"},
		&cli.Float64Flag{Name: "lora-alpha", Aliases: []string{"lora_alpha"}, Value: d.LoraAlpha, Usage: "SLTrain `α`: scale = α/r"},
		&cli.StringFlag{Name: "target-modules", Aliases: []string{"target_modules"}, Usage: "comma-separated `NAMES`: fuse Linear layers whose module name contains one (default attn,attention,mlp; an ONNX MatMul/Gemm weight's module is its node's scope, /model/layers.0/mlp/up_proj/MatMul → model.layers.0.mlp.up_proj)"},
		&cli.StringFlag{Name: "optimizer", Value: d.Optimizer, Usage: "`NAME` of the update, the seed's choices (any case): adam (torch Adam: L2 weight decay into the gradient; what the seed builds without --optimizer), adamw (decoupled weight decay), " +
			"sgd (momentum --beta1, dampening 0), adafactor (HF's with the seed's settings: factored second moment, update clipping 1.0, β1 = --beta1 when > 0), adam8bit (bitsandbytes' Adam8bit: both moments 8-bit, block-wise); each also as NAME_per_layer (the seed's adam8bit_per_layer): every parameter updated inside the backward right after its gradient is complete, no whole-model gradient held; " +
			"identical to NAME; with gradient accumulation the micro-batches accumulate and the last one's backward runs the updates (slc train compiles a config so; the seed's hook steps at every micro-batch instead: not offered); refused with --grad-clipping (the global norm comes after the updates) and with several ranks; the schedule steps once per update (the seed's per-layer schedulers span 2× the steps and warmup)"},
		&cli.Float64Flag{Name: "beta1", Value: 0, Usage: "`B1`: sgd's momentum and adafactor's β1 (0: none), as the seed's --beta1; adam and adamw keep torch's β (0.9, 0.999), as in the seed"},
		&cli.BoolFlag{Name: "activation-checkpointing", Aliases: []string{"activation_checkpointing"}, Usage: "recompute each decoder layer's activations in the backward instead of keeping them (the seed's HF gradient checkpointing: each layer's input is kept); the same loss and gradients, bit for bit"},
		&cli.StringFlag{Name: "memory-budget", Aliases: []string{"memory_budget"}, Usage: "`SIZE` (8GB, 6.5GiB; KB, MB, GB are powers of 1000) the planned total of --memory must fit: the compiler recomputes the fewest decoder layers that bring it there, or says what the least plan needs (with --activation-checkpointing every layer is recomputed)"},
		&cli.StringFlag{Name: "passes", Usage: "run only these comma-separated `PASSES`, in this order, or none (default: the whole pipeline)"},
		&cli.StringFlag{Name: "print-after", Usage: "print the IR text after `PASS` (a name, a comma-separated list, or all) to stdout"},
		&cli.BoolFlag{Name: "explain", Usage: "print one line per compiler decision (fusion, groups, memory)"},
		&cli.BoolFlag{Name: "memory", Usage: "print the memory budget of --peft full and --peft sltrain side by side"},
	}
}

// pipelineOptions reads and checks the pipeline flags.
func pipelineOptions(c *cli.Context, cmd string) (passes.Options, error) {
	o := passes.DefaultOptions()
	o.PEFT = c.String("peft")
	o.Rank = c.Int("rank")
	o.SpRatio = c.Float64("sp-ratio")
	o.LoraAlpha = c.Float64("lora-alpha")
	o.Seed = c.Uint64("seed")
	o.Device = strings.ToLower(c.String("device")) // "" where the command has no --device
	o.ActivationCheckpointing = c.Bool("activation-checkpointing")
	var err error
	if c.IsSet("memory-budget") {
		if o.MemoryBudget, err = driver.ParseByteSize(c.String("memory-budget")); err != nil {
			return o, usagef(cmd, "flag --memory-budget: %v", err)
		}
	}
	if o.Optimizer, o.Beta1, err = driver.OptimizerOptions(c.String("optimizer"), c.Float64("beta1"), c.IsSet("beta1")); err != nil {
		return o, usagef(cmd, "%v", err)
	}
	if t := strings.TrimSpace(c.String("target-modules")); t != "" {
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.TargetModules = append(o.TargetModules, s)
			}
		}
	}
	switch {
	case o.PEFT != "sltrain" && o.PEFT != "full":
		return o, usagef(cmd, "flag --peft: %q is not sltrain or full", o.PEFT)
	case o.Rank < 1:
		return o, usagef(cmd, "flag --rank: must be >= 1, got %d", o.Rank)
	case !(o.SpRatio >= 0 && o.SpRatio < 1):
		return o, usagef(cmd, "flag --sp-ratio: must be in [0, 1), got %v", o.SpRatio)
	case !(o.LoraAlpha > 0) || math.IsInf(o.LoraAlpha, 0):
		return o, usagef(cmd, "flag --lora-alpha: must be > 0, got %v", o.LoraAlpha)
	}
	if _, err := passes.Select(passList(c)); err != nil {
		return o, usagef(cmd, "flag --passes: %v", err)
	}
	for _, p := range printAfter(c) {
		if _, ok := passes.Lookup(p); !ok && p != "all" {
			return o, usagef(cmd, "flag --print-after: unknown pass %q (passes: %s)", p, strings.Join(passes.Names(), ", "))
		}
	}
	return o, nil
}

func passList(c *cli.Context) string {
	if l := c.String("passes"); l != "none" {
		return l
	}
	return ""
}

func printAfter(c *cli.Context) []string {
	var out []string
	for _, p := range strings.Split(c.String("print-after"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runPipeline compiles m in place through the passes the flags name
// (driver.RunPipeline).
func runPipeline(c *cli.Context, path string, m *ir.Module, fromConfig bool, o passes.Options) (*passes.State, error) {
	return driver.RunPipeline(path, m, fromConfig, o, driver.Pipeline{Cmd: c.Command.Name, Passes: c.String("passes"),
		PassesSet: c.IsSet("passes"), PrintAfter: printAfter(c), Trace: c.App.Writer})
}
