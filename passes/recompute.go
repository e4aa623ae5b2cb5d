package passes

import (
	"fmt"
	"regexp"

	"gitee.com/gidean/conv-linn/ir"
)

// recompute is the "recompute" pass, activation recomputation (the seed's
// --activation_checkpointing, HF gradient checkpointing): with
// Options.ActivationCheckpointing, train_step keeps only what each decoder
// layer hands on — its output, the next layer's input — and recomputes the
// values inside the layer in the backward pass, where the layer's gradient
// rules read them; without it the pass does nothing.
//
// A decoder layer is the nodes whose source name is "…layers.N" or
// "…layers.N.…" (the frontend's model.layers.N.*, an imported ONNX model's
// scopes). The forward part of train_step is every node that does not
// depend on the "grad_scale" seed (nor on another runtime scalar or on
// optimizer or accumulator state); it includes what the gradient rules
// compute from forward values alone (a sigmoid for Silu's derivative,
// bf16-mixed's saved copies). A forward node of a layer is internal when
// only nodes of the same layer and the backward read it: not a graph output,
// not read by another layer or by the model outside the layers, not a Const.
// Every backward read of an internal value goes to a copy of its producer
// instead, made from copies of its internal inputs and the originals of
// everything else (the layer's input, parameters, constants); the copies
// are placed in schedule order right before the first backward node that
// needs them, which, the backward running the layers in reverse, is the
// start of that layer's backward. The originals then die in the forward
// (dce removes those only the backward read), so the memory plan keeps one
// layer's activations at a time in the backward instead of every layer's.
//
// The copies apply the same ops to the same inputs as the forward, so the
// values, the loss and the gradients are bit-identical to the run without
// recomputation. The pass runs after cse, which would merge each copy back
// into its original, and before fuse-groups, which groups and schedules the
// copies where they stand.
func recompute(s *State) error {
	if !s.Options.ActivationCheckpointing && s.Options.MemoryBudget <= 0 {
		return nil
	}
	g := s.Module.Graph("train_step")
	if g == nil {
		s.Note("recompute: no train_step (inference only): nothing to recompute")
		return nil
	}
	layers := decoderLayers(g)
	if len(layers) == 0 {
		opt := map[bool]string{true: "activation-checkpointing", false: "memory-budget"}[s.Options.ActivationCheckpointing]
		return &OptionError{Option: opt, Msg: "the model has no decoder layers to recompute (no node is named …layers.N or …layers.N.…)"}
	}
	k := len(layers) // layers recomputed, the first k in forward order
	if !s.Options.ActivationCheckpointing {
		var err error
		if k, err = fitBudget(s, len(layers)); err != nil || k == 0 {
			return err
		}
	}
	chosen := map[string]bool{}
	for _, l := range layers[:k] {
		chosen[l] = true
	}
	st, err := recomputeLayers(g, chosen)
	if err != nil {
		return err
	}
	if s.Module.Meta == nil {
		s.Module.Meta = map[string]string{}
	}
	s.Module.Meta["activation_checkpointing"] = fmt.Sprintf("%d of %d decoder layers", k, len(layers))
	s.Note("recompute: train_step recomputes %d forward nodes of %d decoder layers in the backward (%d nodes no longer kept for it removed)",
		st.copies, st.layers, st.removed)
	return nil
}

// decoderLayers lists g's decoder layers (layerOf) in forward order.
func decoderLayers(g *ir.Graph) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		if l := layerOf(n); l != "" && !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// fitBudget is --memory-budget's choice: the fewest decoder layers (the
// first k) whose recomputation brings the module's planned total (the
// memory table's: state, data and the largest arena) within
// Options.MemoryBudget, found by bisection over k with the rest of the
// pipeline run on a copy of the module for each k tried (recomputing more
// layers never plans more). A budget that even k = layers misses is the
// user's to change (an OptionError naming what the plan needs).
func fitBudget(s *State, layers int) (int, error) {
	budget := s.Options.MemoryBudget
	rest := passesAfterRecompute()
	total := func(k int) (int64, error) {
		o := s.Options
		o.ActivationCheckpointing, o.MemoryBudget = false, 0
		t := &State{Module: s.Module.Clone(), Options: o}
		if k > 0 {
			g := t.Module.Graph("train_step")
			chosen := map[string]bool{}
			for _, l := range decoderLayers(g)[:k] {
				chosen[l] = true
			}
			if _, err := recomputeLayers(g, chosen); err != nil {
				return 0, err
			}
		}
		for _, p := range rest { // (not Run, which reads Pipeline: an initialization cycle)
			if err := p.Run(t); err != nil {
				return 0, fmt.Errorf("pass %s: %w", p.Name, err)
			}
		}
		return t.Memory.Total(), nil
	}
	none, err := total(0)
	if err != nil || none <= budget {
		s.Note("recompute: --memory-budget %s: the plan needs %s without recomputation: nothing recomputed", gib(budget), gib(none))
		return 0, err
	}
	all, err := total(layers)
	if err != nil {
		return 0, err
	}
	if all > budget {
		return 0, &OptionError{Option: "memory-budget", Msg: fmt.Sprintf("%s: the plan needs %s with every one of the %d decoder layers recomputed (%s without recomputation); slc compile --memory shows where it goes",
			gib(budget), gib(all), layers, gib(none))}
	}
	lo, hi := 0, layers // total(lo) > budget >= total(hi)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		t, err := total(mid)
		if err != nil {
			return 0, err
		}
		if t <= budget {
			hi = mid
		} else {
			lo = mid
		}
	}
	s.Note("recompute: --memory-budget %s: %d of %d decoder layers recomputed (the plan needs %s without recomputation)", gib(budget), hi, layers, gib(none))
	return hi, nil
}

// passesAfterRecompute returns the pipeline's passes after recompute; it is
// set in init because Pipeline, which holds recompute, cannot be read from
// the functions its initializer refers to.
var passesAfterRecompute func() []Pass

func init() {
	passesAfterRecompute = func() []Pass {
		for i, p := range Pipeline {
			if p.Name == "recompute" {
				return Pipeline[i+1:]
			}
		}
		return nil
	}
}

// gib formats a byte count in GiB, MiB below 1 GiB, bytes below 1 MiB.
func gib(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return mib(b)
	}
	return fmt.Sprintf("%d bytes", b)
}

// recomputeStats says what recomputeLayers did.
type recomputeStats struct {
	layers  int // decoder layers with a recomputed value
	copies  int // nodes copied into the backward
	removed int // forward nodes that died (only the backward had read them)
}

// layerScope matches a decoder layer's source name and captures the layer.
var layerScope = regexp.MustCompile(`^(.*\blayers\.\d+)(\.|$)`)

// layerOf returns the decoder layer a node belongs to, "" when none.
func layerOf(n *ir.Node) string {
	if m := layerScope.FindStringSubmatch(n.Name); m != nil {
		return m[1]
	}
	return ""
}

// recomputeLayers rewrites g (see recompute) for the decoder layers in
// chosen.
func recomputeLayers(g *ir.Graph, chosen map[string]bool) (recomputeStats, error) {
	var st recomputeStats
	if g.Input("grad_scale") == nil {
		return st, fmt.Errorf("graph %q has no grad_scale input: not a train_step autodiff derived", g.Name)
	}
	producer := g.Producers()
	// backward: nodes that depend on the seed of the backward pass, or on
	// any other runtime scalar or optimizer or accumulator state (an update
	// placed in train_step): what is left is the forward, a function of
	// the parameters, buffers and data.
	backward := map[*ir.Node]bool{}
	fromSeed := map[string]bool{}
	for _, in := range g.Inputs {
		if in.Role == ir.Scalar || in.Role == ir.OptState || in.Role == ir.GradAccum {
			fromSeed[in.Name] = true
		}
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if fromSeed[in] {
				backward[n] = true
				break
			}
		}
		if backward[n] {
			for _, o := range n.Outputs {
				fromSeed[o.Name] = true
			}
		}
	}
	// internal: forward nodes of a layer that only their layer's forward
	// and the backward read.
	layer := map[*ir.Node]string{}
	for _, n := range g.Nodes {
		if !backward[n] && n.Op != "Const" {
			layer[n] = layerOf(n)
		}
	}
	escapes := map[*ir.Node]bool{}
	for _, n := range g.Nodes {
		if backward[n] {
			continue
		}
		for _, in := range n.Inputs {
			if p := producer[in]; p != nil && layer[p] != "" && layer[p] != layer[n] {
				escapes[p] = true
			}
		}
	}
	for _, o := range g.Outputs {
		if p := producer[o.Value]; p != nil {
			escapes[p] = true
		}
	}
	internal := func(n *ir.Node) bool { return n != nil && chosen[layer[n]] && !escapes[n] }

	b := ir.BuilderFor(g)
	copied := map[string]string{} // internal value → its copy
	layers := map[string]bool{}
	nodes := make([]*ir.Node, 0, len(g.Nodes))
	// recomputed returns v as the backward reads it: its copy when v is
	// internal, emitting the copies it needs (depth first, so in
	// topological order) into nodes.
	var recomputed func(v string) string
	recomputed = func(v string) string {
		p := producer[v]
		if !internal(p) {
			return v
		}
		if c, ok := copied[v]; ok {
			return c
		}
		c := p.Clone()
		for i, in := range p.Inputs {
			c.Inputs[i] = recomputed(in)
		}
		for i := range c.Outputs {
			c.Outputs[i].Name = b.Fresh()
			copied[p.Outputs[i].Name] = c.Outputs[i].Name
		}
		nodes = append(nodes, c)
		st.copies++
		layers[layer[p]] = true
		return copied[v]
	}
	for _, n := range g.Nodes {
		if backward[n] {
			for i, in := range n.Inputs {
				n.Inputs[i] = recomputed(in)
			}
		}
		nodes = append(nodes, n)
	}
	g.Nodes = nodes
	st.layers = len(layers)
	st.removed = deadCodeElim(g)
	return st, b.Err()
}
