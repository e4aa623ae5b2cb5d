package driver

import (
	"strings"

	"gitee.com/gidean/conv-linn/passes"
)

// Spec is what a model is built with for training: the batch and length
// of its programs, the seed of its initial weights and sparse supports, its
// precision, its rows (packed, or documents with a loss mask), the SLTrain
// settings and the optimizer. Opening an artifact or an ONNX model may fix
// some of them; the opener writes back what the model has.
type Spec struct {
	BatchSize, MaxLength int
	Seed                 uint64
	Precision            Precision
	Rows                 string // "packed" or "documents"
	PEFT                 string // "sltrain" or "full"
	Rank                 int
	SpRatio, LoraAlpha   float64
	TargetModules        string // comma-separated
	Optimizer            string
	Beta1                float64
	Lowering             string // --sltrain-lowering ("" when an artifact fixed it)
	CPU                  string // the LLVM CPU (an artifact's own)
	// ActivationCheckpointing recomputes each decoder layer in the backward;
	// MemoryBudget (bytes, 0: none) recomputes the fewest layers that fit.
	// Memory only: the same results (an artifact has them compiled in).
	ActivationCheckpointing bool
	MemoryBudget            int64
	// Accumulate: updates take several micro-batches; with a per-layer
	// optimizer the last one runs in train_update, the updates inside its
	// backward.
	Accumulate bool
	// TrainScaling: the seed's --train_scaling (a trainable tanh scale per
	// SLTrain layer).
	TrainScaling bool
}

// PassOptions are the pipeline options of SLTrain settings and a precision,
// with the default optimizer (WithOptimizer sets another).
func PassOptions(peft string, rank int, spRatio, alpha float64, targets string, seed uint64, mixed bool) passes.Options {
	o := passes.DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.LoraAlpha, o.Seed, o.BF16Mixed = peft, rank, spRatio, alpha, seed, mixed
	for _, t := range strings.Split(targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.TargetModules = append(o.TargetModules, t)
		}
	}
	return o
}

// WithOptimizer sets o's optimizer (a name that does not parse keeps the
// default, for a checkpoint of an older slc).
func WithOptimizer(o passes.Options, optimizer string, beta1 float64) passes.Options {
	if opt, b1, err := OptimizerOptions(optimizer, beta1, beta1 != 0); err == nil {
		o.Optimizer, o.Beta1 = opt, b1
	}
	return o
}

// passOptions are the spec's pipeline options.
func (s *Spec) passOptions() passes.Options {
	o := PassOptions(s.PEFT, s.Rank, s.SpRatio, s.LoraAlpha, s.TargetModules, s.Seed, s.Precision.Mixed)
	o.ActivationCheckpointing, o.MemoryBudget = s.ActivationCheckpointing, s.MemoryBudget
	o.TrainScaling = s.TrainScaling && s.PEFT == "sltrain"
	o = WithOptimizer(o, s.Optimizer, s.Beta1)
	if _, perLayer := passes.SplitPerLayer(o.Optimizer); perLayer {
		o.Accumulate = s.Accumulate // train_update for an update's last micro-batch
	}
	return o
}

// OptimizerOptions reads --optimizer and --beta1 as the seed does: β1 is
// SGD's momentum and Adafactor's β1; the Adam family keeps torch's default
// β (0.9, 0.999), so a --beta1 other than 0 for it is refused rather than
// ignored.
func OptimizerOptions(name string, beta1 float64, beta1Set bool) (string, float64, error) {
	opt, err := passes.ParseOptimizer(name)
	if err != nil {
		return "", 0, errorf("flag --optimizer: %v", err)
	}
	switch base, _ := passes.SplitPerLayer(opt); {
	case base == "sgd" || base == "adafactor":
		if !(beta1 >= 0 && beta1 < 1) {
			return "", 0, errorf("flag --beta1: %s's β1 must be in [0, 1), got %v", opt, beta1)
		}
		return opt, beta1, nil
	case beta1Set && beta1 != 0:
		return "", 0, errorf("flag --beta1: %v applies to sgd (momentum) and adafactor; %s uses torch's β1 0.9, as the seed's %s does", beta1, opt, opt)
	}
	return opt, passes.DefaultOptions().Beta1, nil
}
