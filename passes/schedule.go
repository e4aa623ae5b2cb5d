package passes

import (
	"errors"

	"gitee.com/gidean/conv-linn/ir"
)

// Schedule runs the required passes of the pipeline (fuse-groups, then
// memory-plan) on a copy of m and returns their State: the copy, with each
// graph's kernel groups and memory plan. It is for a module that comes to
// codegen without them — IR read from a file, a --passes list that left
// them out, a module built by hand in a test, a module whose groups were
// formed for another device (fuse-linear-xent's CPU loss head on cuda) —
// since codegen compiles only a planned module. The copy is what to
// compile: fuse-groups adds Const copies to the graphs it partitions.
// fuse-linear-xent, not a required pass, is not run.
func Schedule(m *ir.Module) (*State, error) {
	if m == nil {
		return nil, errors.New("no module to schedule")
	}
	s := &State{Module: m.Clone()}
	if err := Run(s, Required(Pipeline)); err != nil {
		return nil, err
	}
	return s, nil
}

// ForDevice returns the planned State to compile s's module for device ("",
// "cpu" or "cuda"): s itself when it holds groups and plans that suit the
// device, else Schedule(s.Module). The cuda device runs the loss head
// unfused, so the groups of a pipeline run for the CPU that hold
// fuse-linear-xent's chunked loss head are formed afresh, on a copy; so
// are the groups and plans of a State that has none.
func (s *State) ForDevice(device string) (*State, error) {
	if s.Groups != nil && s.Plans != nil && (device != "cuda" || !hasChunkedLossHead(s.Groups)) {
		return s, nil
	}
	return Schedule(s.Module)
}

// hasChunkedLossHead reports whether any graph's groups hold
// fuse-linear-xent's kernel (GroupLinearCrossEntropy).
func hasChunkedLossHead(groups map[string][]*Group) bool {
	for _, gs := range groups {
		for _, g := range gs {
			if g.Kind == GroupLinearCrossEntropy {
				return true
			}
		}
	}
	return false
}
