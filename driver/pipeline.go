package driver

import (
	"errors"
	"fmt"
	"io"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// Pipeline says which passes Run runs and what it prints.
type Pipeline struct {
	Cmd string // the command, for usage errors
	// Passes is --passes: "" for the whole pipeline, "none", or a
	// comma-separated list; PassesSet says whether it was given.
	Passes     string
	PassesSet  bool
	PrintAfter []string  // pass names (or "all") whose IR goes to Trace
	Trace      io.Writer // --print-after's output
}

// RunPipeline compiles m in place: a model built from a config or an ONNX
// model (fromSource) goes through the whole pipeline, IR read from a file
// only through the passes of p.Passes (it may be compiled already). Errors
// from a pass are the user's (a rank too big for a layer, …) and name the
// model file.
func RunPipeline(path string, m *ir.Module, fromSource bool, o passes.Options, p Pipeline) (*passes.State, error) {
	s := &passes.State{Module: m, Options: o, PrintAfter: p.PrintAfter, Trace: p.Trace}
	if p.Passes == "none" || (!fromSource && !p.PassesSet) {
		return s, nil
	}
	list, err := passes.Select(p.Passes)
	if err != nil {
		return nil, Usagef("compile", "flag --passes: %v", err)
	}
	if err := passes.Run(s, list); err != nil {
		return nil, PassError(p.Cmd, path, err)
	}
	if err := m.Verify(); err != nil {
		return nil, &InternalError{fmt.Errorf("%s: the compiled IR does not verify: %w", path, err)}
	}
	return s, nil
}

// MemoryColumns compiles the forward module twice more, full-rank and
// SLTrain, for the side-by-side memory table.
func MemoryColumns(forward *ir.Module, o passes.Options) ([]passes.NamedUsage, error) {
	var cols []passes.NamedUsage
	for _, peft := range []string{"full", "sltrain"} {
		oo := o
		oo.PEFT = peft
		s := &passes.State{Module: forward.Clone(), Options: oo}
		err := passes.Run(s, passes.Pipeline)
		over := ""
		var oe *passes.OptionError
		if errors.As(err, &oe) && oe.Option == "memory-budget" && peft != o.PEFT {
			// The other column misses the budget: shown recomputing every layer.
			oo.ActivationCheckpointing, over = true, ", over budget"
			s = &passes.State{Module: forward.Clone(), Options: oo}
			err = passes.Run(s, passes.Pipeline)
		}
		if err != nil {
			return nil, err
		}
		name := "--peft full" + over
		if peft == "sltrain" {
			name = fmt.Sprintf("--peft sltrain (r %d, δ %g%s)", oo.Rank, oo.SpRatio, over)
		}
		cols = append(cols, passes.NamedUsage{Name: name, Usage: s.Memory})
	}
	return cols, nil
}
