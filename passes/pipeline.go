// Package passes holds every graph→graph transform and analysis of slc: the
// SLTrain fusion, reverse-mode autodiff, the optimizer update, simplification,
// fusion grouping and memory planning. The pipeline is one visible list
// (Pipeline, below); each pass lives in a file named after it.
package passes

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// Pass is one named step of the pipeline. Run transforms the module held by the
// State in place (or replaces it) and may record analysis results there.
type Pass struct {
	Name string
	Doc  string
	Run  func(s *State) error
	// Required marks a pass whose result codegen cannot do without (the
	// kernel groups and the memory plan): a --passes list may leave it out
	// to look at the IR, but a module is compiled to native code only after
	// it ran (Schedule runs the required passes for such a module).
	Required bool
}

// Pipeline is the compiler, in order. Go's cmd/compile/internal/ssa keeps its
// passes the same way: one list, read top to bottom, its ordering rules
// stated beside it (passOrder, order.go) and checked when the package loads.
var Pipeline = []Pass{
	{Name: "sltrain-fuse", Doc: "rewrite targeted Linear ops into LowRankSparseAdd (W = B·A·scale + S)", Run: sltrainFuse},
	{Name: "autodiff", Doc: "derive train_step: forward + reverse-mode backward seeded by grad_scale, gradients added to P.grad accumulators", Run: autodiff},
	{Name: "mixed-precision", Doc: "bf16-mixed only: every matrix product takes bf16-rounded operands and returns f32 (saved activations read from their bf16 copies)", Run: mixedPrecision},
	{Name: "optimizer", Doc: "build update: global-norm clipping + the optimizer (adam, adamw, sgd, adafactor, adam8bit) over the accumulated gradients, accumulators reset", Run: optimizer},
	{Name: "per-layer", Doc: "<optimizer>_per_layer only: fuse update into train_step (with accumulation: into train_update, the last micro-batch), each parameter's update right after its gradient (which dies there); no update graph", Run: perLayer},
	{Name: "programs", Doc: "derive eval (loss) and infer (logits) from forward, drop forward, order the graphs", Run: programs},
	{Name: "fold", Doc: "constant folding: element-wise ops, casts and data movement of uniform Consts become Consts", Run: fold},
	{Name: "algebra", Doc: "algebraic simplification (x·1, x+0, x−0, x/1, no-op casts/reshapes/expands/transposes, composed transposes/reshapes), table-driven", Run: algebra},
	{Name: "cse", Doc: "merge nodes with the same op, inputs and attributes (Consts included)", Run: cse},
	{Name: "dce", Doc: "remove nodes whose results reach no graph output", Run: dce},
	{Name: "recompute", Doc: "--activation-checkpointing or --memory-budget only: train_step keeps each decoder layer's input and recomputes the layer's values in its backward, bit-identically (every layer, or the fewest that fit the budget)", Run: recompute},
	{Name: "fuse-groups", Doc: "partition each graph into kernels: element-wise chains/DAGs, reductions closing them, views, single ops, block-wise 8-bit optimizer updates (State.Groups)", Run: fuseGroups, Required: true},
	{Name: "fuse-linear-xent", Doc: "CPU: lm_head's product, the cross-entropy, its gradient and lm_head's backward products become one kernel run in chunks of rows; the [T, V] logits are never stored", Run: fuseLinearXent},
	{Name: "memory-plan", Doc: "liveness over the group schedule; one 64-byte-aligned arena, best-fit reuse of freed space; state and inputs apart (State.Plans, State.Memory)", Run: memoryPlan, Required: true},
}

// OptionError is an option that does not fit the model, such as a rank
// larger than a layer: the caller's to fix (a usage error for the CLI), not
// a fault of the model.
type OptionError struct {
	Option string // the Options field, by its flag-like name: "rank"
	Msg    string
}

func (e *OptionError) Error() string { return e.Msg }

// Options are the settings passes read. Zero values are not defaults: use
// DefaultOptions.
type Options struct {
	PEFT          string   // "sltrain" or "full"
	Rank          int      // SLTrain r
	SpRatio       float64  // SLTrain δ: nnz = ⌊δ·in·out⌋
	LoraAlpha     float64  // scale = alpha / r
	Seed          uint64   // seed for the sparse supports and the low-rank init
	TargetModules []string // substrings of module names to fuse; nil = the seed's rule
	// TrainScaling is the seed's --train_scaling: each SLTrain layer's scale
	// is tanh of a trainable [1] parameter <module>.scaling (initialised
	// to 1) instead of the fixed lora_alpha/r.
	TrainScaling bool
	// Optimizer is the update rule (ParseOptimizer's names; "" is adamw);
	// a name ending in _per_layer fuses the updates into the backward.
	Optimizer string
	Beta1     float64 // Adam/AdamW β1 (exp_avg decay); SGD's momentum; Adafactor's β1 (0: none)
	Beta2     float64 // Adam/AdamW β2 (exp_avg_sq decay)
	Eps       float64 // Adam/AdamW ε added to the bias-corrected √v
	// Adam8bitMinSize is bitsandbytes' min_8bit_size: adam8bit keeps f32
	// states for tensors with fewer elements (0: its default, 4096).
	Adam8bitMinSize int
	// BF16Mixed is slc's bf16-mixed precision for an f32 model: matrix
	// products on bf16-rounded operands with f32 results, activations saved
	// for backward in bf16; parameters, gradients and AdamW stay f32.
	BF16Mixed bool
	// ActivationCheckpointing recomputes each decoder layer's forward
	// values in train_step's backward instead of keeping them (the seed's
	// --activation_checkpointing; the recompute pass).
	ActivationCheckpointing bool
	// MemoryBudget, when > 0 and without ActivationCheckpointing, has the
	// recompute pass recompute the fewest decoder layers that bring the
	// planned total (MemoryUsage.Total) within this many bytes.
	MemoryBudget int64
	// Device is the target the groups are for: "" or "cpu", or "cuda"
	// (fuse-linear-xent leaves the cuda device's loss head unfused).
	Device string
	// Accumulate builds per-layer updates for gradient accumulation: the
	// accumulating train_step stays, for every micro-batch but an update's
	// last, and train_update (TrainUpdate) runs the last one with the
	// updates inside its backward. Without it, per-layer train_step is
	// the whole update of one micro-batch.
	Accumulate bool
}

// DefaultTargetModules is the seed's rule: every Linear whose module name
// contains one of these (all seven projections of a LLaMA block).
var DefaultTargetModules = []string{"attn", "attention", "mlp"}

// DefaultOptions are the seed's SLTrain settings.
func DefaultOptions() Options {
	return Options{PEFT: "sltrain", Rank: 128, SpRatio: 0.03, LoraAlpha: 32, Optimizer: "adamw", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

// State is what the passes share: the module being compiled, the options and
// the results of analyses for later passes and for codegen.
type State struct {
	Module  *ir.Module
	Options Options
	// Verify runs Module.Verify after every pass (tests turn it on).
	Verify bool
	// PrintAfter names passes ("all" for every one) whose result is written to Trace.
	PrintAfter []string
	Trace      io.Writer
	// Notes collects one line per decision worth explaining (slc compile --explain).
	Notes []string
	// Groups holds each graph's kernels in schedule order, by graph name (fuse-groups).
	Groups map[string][]*Group
	// Plans holds each graph's memory plan, by graph name (memory-plan).
	Plans map[string]*MemoryPlan
	// Memory is the module's memory budget (memory-plan).
	Memory MemoryUsage
}

// Note records an explanation line.
func (s *State) Note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Lookup returns the pass of that name.
func Lookup(name string) (Pass, bool) {
	for _, p := range Pipeline {
		if p.Name == name {
			return p, true
		}
	}
	return Pass{}, false
}

// Select returns the passes named in a comma-separated list, in the order given
// (for --passes experiments); an empty list selects the whole pipeline.
func Select(list string) ([]Pass, error) {
	if strings.TrimSpace(list) == "" {
		return Pipeline, nil
	}
	var out []Pass
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		p, ok := Lookup(name)
		if !ok {
			return nil, fmt.Errorf("unknown pass %q (passes: %s)", name, strings.Join(Names(), ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// Names lists the pipeline's pass names in order.
func Names() []string {
	names := make([]string, len(Pipeline))
	for i, p := range Pipeline {
		names[i] = p.Name
	}
	return names
}

// Run applies the passes in order.
func Run(s *State, passes []Pass) error {
	for _, name := range s.PrintAfter {
		if _, ok := Lookup(name); !ok && name != "all" {
			return fmt.Errorf("--print-after: unknown pass %q (passes: %s)", name, strings.Join(Names(), ", "))
		}
	}
	for _, p := range passes {
		if err := p.Run(s); err != nil {
			return fmt.Errorf("pass %s: %w", p.Name, err)
		}
		if s.Verify {
			if err := s.Module.Verify(); err != nil {
				return fmt.Errorf("after pass %s: %w", p.Name, err)
			}
		}
		if s.Trace != nil && (slices.Contains(s.PrintAfter, p.Name) || slices.Contains(s.PrintAfter, "all")) {
			fmt.Fprintf(s.Trace, "// after %s\n", p.Name)
			s.Trace.Write(s.Module.MarshalText())
		}
	}
	return nil
}
