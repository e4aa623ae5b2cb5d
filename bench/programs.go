package bench

import (
	"fmt"
	"io"
	"sort"
	"time"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
)

// Result is one measured configuration.
type Result struct {
	StepSeconds   float64
	TokensPerSec  float64
	FLOPsPerStep  int64
	CompileSecond float64
	Where         string // threads or the GPU's launch
}

// Program is one compiled program bench times: a lowering of the
// model, or the artifact as it is.
type Program struct {
	Lowering string // "merged", "auto", "factored", or "" (full-rank, artifact)
	Art      *artifact.Artifact
	Compile  float64 // seconds to compile it (or read the artifact)
	SameAs   string  // set when this lowering compiled to another's program: not timed again
}

// Lowerings are the SLTrain lowerings bench times: the one a user
// gets first (auto, or the flag's), then merged when that is another.
// A full-rank model has one program ("").
func Lowerings(sltrain bool, flag string, set bool) []string {
	if !sltrain {
		return []string{""}
	}
	if !set {
		flag = "auto"
	}
	switch {
	case flag == "merged":
		return []string{"merged"}
	case !set:
		return []string{"auto", "merged", "factored"}
	}
	return []string{flag, "merged"}
}

// TimeOptions say how Time times a program.
type TimeOptions struct {
	Seed          uint64 // of the random tokens
	Steps, Warmup int    // timed steps, untimed ones first
	Profile       bool   // profile the kernels over the timed steps
	// Progress, when set, receives a line redrawn in place per step (a
	// terminal).
	Progress io.Writer
}

// Time times steps of train_step + update on random tokens after warm-up
// steps: the median step.
func Time(rt *runtime.Runtime, ids ir.Type, vocab int, o TimeOptions) (*Result, error) {
	seed, steps, warmup := o.Seed, o.Steps, o.Warmup
	rng := ir.NewRNG(seed)
	tokens := make([]int64, ids.NumElements())
	var times []float64
	perLayer := passes.PerLayerModule(rt.Module())
	for i := 0; i < warmup+steps; i++ {
		if i == warmup && o.Profile {
			if err := rt.Profile(true); err != nil {
				return nil, err
			}
		}
		for j := range tokens {
			tokens[j] = int64(rng.Uint64n(uint64(vocab)))
		}
		upd := map[string]float64{"lr": 1e-3, "step": float64(i + 1), "weight_decay": 0, "max_grad_norm": 1e30}
		ts := map[string]float64{"grad_scale": 1}
		if perLayer { // the updates run inside train_step (--optimizer NAME_per_layer)
			upd["grad_coef"] = 1
			for k, v := range upd {
				if rt.Module().Graph("train_step").Input(k) != nil {
					ts[k] = v
				}
			}
		}
		t0 := time.Now()
		if _, err := rt.Run("train_step", runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}, Scalars: ts}); err != nil {
			return nil, err
		}
		if !perLayer {
			if _, err := rt.Run("update", runtime.Inputs{Scalars: upd}); err != nil {
				return nil, err
			}
		}
		d := time.Since(t0).Seconds()
		if i >= warmup {
			times = append(times, d)
		}

		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "\rstep %d/%d: %.3f s", i+1, warmup+steps, d)
		}
	}
	if o.Progress != nil {
		fmt.Fprintln(o.Progress)
	}
	sort.Float64s(times)
	return &Result{StepSeconds: times[len(times)/2]}, nil
}
