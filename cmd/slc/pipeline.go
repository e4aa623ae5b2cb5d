package main

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/urfave/cli/v2"

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
	var err error
	if o.Optimizer, o.Beta1, err = optimizerOptions(c.String("optimizer"), c.Float64("beta1"), c.IsSet("beta1")); err != nil {
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

// optimizerOptions reads --optimizer and --beta1 as the seed does: β1 is
// SGD's momentum and Adafactor's β1; the Adam family keeps torch's default
// β (0.9, 0.999), so a --beta1 other than 0 for it is refused rather than
// ignored.
func optimizerOptions(name string, beta1 float64, beta1Set bool) (string, float64, error) {
	opt, err := passes.ParseOptimizer(name)
	if err != nil {
		return "", 0, fmt.Errorf("flag --optimizer: %v", err)
	}
	switch base, _ := passes.SplitPerLayer(opt); {
	case base == "sgd" || base == "adafactor":
		if !(beta1 >= 0 && beta1 < 1) {
			return "", 0, fmt.Errorf("flag --beta1: %s's β1 must be in [0, 1), got %v", opt, beta1)
		}
		return opt, beta1, nil
	case beta1Set && beta1 != 0:
		return "", 0, fmt.Errorf("flag --beta1: %v applies to sgd (momentum) and adafactor; %s uses torch's β1 0.9, as the seed's %s does", beta1, opt, opt)
	}
	return opt, passes.DefaultOptions().Beta1, nil
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

// runPipeline compiles m in place: a model built from a config goes through the
// whole pipeline, IR read from a file only through the passes named with
// --passes (it may be compiled already). Errors from a pass are the user's (a
// rank too big for a layer, …) and name the model file.
func runPipeline(c *cli.Context, path string, m *ir.Module, fromConfig bool, o passes.Options) (*passes.State, error) {
	s := &passes.State{Module: m, Options: o, PrintAfter: printAfter(c), Trace: c.App.Writer}
	if c.String("passes") == "none" || (!fromConfig && !c.IsSet("passes")) {
		return s, nil
	}
	list, err := passes.Select(passList(c))
	if err != nil {
		return nil, usagef("compile", "flag --passes: %v", err)
	}
	if err := passes.Run(s, list); err != nil {
		return nil, passError(c.Command.Name, path, err)
	}
	if err := m.Verify(); err != nil {
		return nil, &internalError{fmt.Errorf("%s: the compiled IR does not verify: %w", path, err)}
	}
	return s, nil
}

// memoryColumns compiles the forward module twice more, full-rank and SLTrain,
// for the side-by-side memory table.
func memoryColumns(forward *ir.Module, o passes.Options) ([]passes.NamedUsage, error) {
	var cols []passes.NamedUsage
	for _, peft := range []string{"full", "sltrain"} {
		oo := o
		oo.PEFT = peft
		s := &passes.State{Module: forward.Clone(), Options: oo}
		if err := passes.Run(s, passes.Pipeline); err != nil {
			return nil, err
		}
		name := "--peft full"
		if peft == "sltrain" {
			name = fmt.Sprintf("--peft sltrain (r %d, δ %g)", oo.Rank, oo.SpRatio)
		}
		cols = append(cols, passes.NamedUsage{Name: name, Usage: s.Memory})
	}
	return cols, nil
}

// passError is a failed pass as the CLI reports it: an option that does not
// fit the model (--rank larger than a layer) is a usage error of cmd.
func passError(cmd, path string, err error) error {
	var oe *passes.OptionError
	if errors.As(err, &oe) {
		return usagef(cmd, "flag --%s: %s: %s", oe.Option, path, oe.Msg)
	}
	return fmt.Errorf("%s: %w", path, err)
}
