package codegen

import "fmt"

// UnplannedError is Compile's refusal of a module that comes without the
// scheduling passes' results: Options.Groups and Options.Plans must hold
// every graph's kernel groups and memory plan (fuse-groups and memory-plan,
// the pipeline's required passes), formed for the device compiled for.
// Compile does not plan a module itself: a caller with a module that did
// not go through the pipeline runs passes.Schedule on it and compiles the
// State's copy.
type UnplannedError struct {
	Graph  string // the graph without groups or a plan; "" for the module
	Reason string
}

func (e *UnplannedError) Error() string {
	if e.Graph == "" {
		return "codegen: unplanned module: " + e.Reason + " (run the pass pipeline, or passes.Schedule, first)"
	}
	return fmt.Sprintf("codegen: graph %q is unplanned: %s (run the pass pipeline, or passes.Schedule, first)", e.Graph, e.Reason)
}
