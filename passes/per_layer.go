package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// perLayer is the "per-layer" pass, for an optimizer named <name>_per_layer
// (the seed's adam8bit_per_layer: one optimizer per parameter, stepped in a
// post-accumulate-grad hook): it fuses the "update" graph into "train_step"
// so that each parameter's update runs inside the backward, right after its
// gradient is complete, and the gradient dies there. No gradient
// accumulator exists afterwards (train_step has no GradAccum input, and the
// module no update graph), so the memory plan holds no whole-model gradient
// buffer: each transient gradient lives from the product that makes it to
// its update.
//
// train_step then takes the update's Scalars ("lr", "step",
// "weight_decay", and "grad_coef", the trainer's 1 that stands where the
// clipping coefficient would: see updateBuilder.noClip) besides
// "grad_scale", reads and writes the optimizer
// states, and outputs "grad_norm" (the global norm, reported, not applied:
// the optimizer pass builds a per-layer update without clipping, which
// cannot act before updates that run before the norm is known). One run of
// train_step is one whole update of one micro-batch, identical to
// train_step + update with accumulation 1 and no clipping.
//
// With Options.Accumulate (gradient accumulation) train_step stays as it
// is, for every micro-batch of an update but the last, and the update is
// fused into a copy of it, "train_update" (TrainUpdate), for the last: each
// parameter's update reads the accumulation P.grad + g as soon as it is
// made, and the accumulators are reset by the update's own outputs. That
// is the whole-model update of the accumulated gradient, run inside the
// last backward; the accumulators remain (accumulation needs them).
//
// Placement: the update's nodes built for parameter P (scope P) and those
// that read P's gradient (the norm's term) go right after the last node of
// the backward that produces P's gradient or reads P (so that P can be
// written in place); the update's other nodes (per-step scalars) go right
// after their last input's producer.
func perLayer(s *State) error {
	_, on := SplitPerLayer(s.Options.Optimizer)
	if !on {
		return nil
	}
	m := s.Module
	ts, up := m.Graph("train_step"), m.Graph("update")
	if ts == nil || up == nil {
		return fmt.Errorf("per-layer updates need the train_step and update graphs (run autodiff and optimizer first)")
	}
	target := ts
	if s.Options.Accumulate {
		target = ts.Clone()
		target.Name = TrainUpdate
	}
	n, err := fuseUpdate(target, up, s.Options.Accumulate)
	if err != nil {
		return err
	}
	var graphs []*ir.Graph
	for _, g := range m.Graphs {
		if g != up {
			graphs = append(graphs, g)
		}
	}
	m.Graphs = graphs
	if target != ts {
		insertGraphAfter(m, "train_step", target)
	}
	if m.Meta == nil {
		m.Meta = map[string]string{}
	}
	m.Meta["per_layer"] = "true"
	if s.Options.Accumulate {
		s.Note("per-layer: update fused into %s (the last micro-batch of an update: accumulated gradient + its own, then the step; accumulators reset): %d parameters updated right after their gradients, %d update nodes placed; train_step accumulates the others", TrainUpdate, len(trainable(ts)), n)
	} else {
		s.Note("per-layer: update fused into train_step: %d parameters updated right after their gradients, %d update nodes placed, no gradient accumulators", len(trainable(ts)), n)
	}
	return nil
}

// TrainUpdate is the program of per-layer updates with gradient
// accumulation (Options.Accumulate): the last micro-batch of an update,
// which adds its gradients to the accumulated ones and updates each
// parameter inside its backward.
const TrainUpdate = "train_update"

// fuseUpdate merges the update graph up into ts (a train_step) and returns
// the number of update nodes placed. Without accumulate, each accumulation
// "P.grad + g" becomes its gradient g and the accumulators go; with it,
// the update reads the accumulation's value and the accumulators are reset
// (the update's own outputs) instead of written.
func fuseUpdate(ts, up *ir.Graph, accumulate bool) (int, error) {
	producer := ts.Producers()
	grad := map[string]string{} // accumulator → gradient value in ts
	drop := map[*ir.Node]bool{}
	var outs []*ir.Output
	for _, o := range ts.Outputs {
		in := ts.Input(o.Updates)
		if in == nil || in.Role != ir.GradAccum {
			outs = append(outs, o)
			continue
		}
		n := producer[o.Value]
		if n == nil || n.Op != "Add" || len(n.Inputs) != 2 || n.Inputs[0] != in.Name {
			return 0, fmt.Errorf("%s: accumulator %q is not updated by %s + gradient", ts.Name, in.Name, in.Name)
		}
		if accumulate {
			grad[in.Name] = o.Value
			continue
		}
		grad[in.Name] = n.Inputs[1]
		drop[n] = true
	}
	ts.Outputs = outs
	uses := ts.Uses()
	var nodes []*ir.Node
	for _, n := range ts.Nodes {
		if !drop[n] {
			nodes = append(nodes, n)
			continue
		}
		if uses[n.Outputs[0].Name] > 0 {
			return 0, fmt.Errorf("%s: accumulation %q is read by more than its output", ts.Name, n.Outputs[0].Name)
		}
	}
	var inputs []*ir.Input
	for _, in := range ts.Inputs {
		if accumulate || in.Role != ir.GradAccum {
			inputs = append(inputs, in)
		}
	}
	ts.Nodes, ts.Inputs = nodes, inputs

	// Where each parameter's update may start: after its gradient and its
	// last reader in train_step.
	index := map[string]int{} // train_step value → index of its producer
	for i, n := range ts.Nodes {
		for _, o := range n.Outputs {
			index[o.Name] = i
		}
	}
	ready := map[string]int{} // parameter → anchor
	for _, in := range ts.Inputs {
		if in.Role == ir.Param {
			ready[in.Name] = -1
		}
	}
	for i, n := range ts.Nodes {
		for _, v := range n.Inputs {
			if _, ok := ready[v]; ok {
				ready[v] = i
			}
		}
	}

	// The update's values, renamed into train_step.
	rename := map[string]string{}
	anchor := map[string]int{} // value → index of the train_step node it follows
	upUses := up.Uses()
	for _, in := range up.Inputs {
		switch in.Role {
		case ir.Param:
			if ts.Input(in.Name) == nil {
				return 0, fmt.Errorf("update: parameter %q is not a train_step input", in.Name)
			}
			rename[in.Name] = in.Name
			anchor[in.Name] = -1
		case ir.GradAccum:
			g, ok := grad[in.Name]
			if !ok {
				return 0, fmt.Errorf("update: accumulator %q is not updated by train_step", in.Name)
			}
			rename[in.Name] = g
			// Whatever reads the gradient waits for P's readers too: an
			// element-wise group of fuse-groups (the norm's g·g with P's
			// step) runs where its first node is.
			a := -1 // a gradient that is an input (none in practice)
			if i, made := index[g]; made {
				a = i
			}
			if r, ok := ready[in.Of]; ok {
				a = max(a, r)
				ready[in.Of] = a
			}
			anchor[in.Name] = a
		default:
			if upUses[in.Name] == 0 && in.Role == ir.Scalar {
				continue // max_grad_norm: no clipping per layer
			}
			if ts.Input(in.Name) != nil {
				return 0, fmt.Errorf("update input %q is already a train_step input", in.Name)
			}
			cp := *in
			cp.Init = in.Init.Clone()
			ts.Inputs = append(ts.Inputs, &cp)
			rename[in.Name] = in.Name
			anchor[in.Name] = -1
		}
	}
	b := ir.BuilderFor(ts) // knows the inputs just added: fresh names avoid them
	after := map[int][]*ir.Node{}
	for _, n := range up.Nodes {
		c := n.Clone()
		a := -1
		if r, ok := ready[n.Name]; ok {
			a = r // scoped to parameter n.Name
		}
		for i, v := range c.Inputs {
			r, ok := rename[v]
			if !ok {
				return 0, fmt.Errorf("update: %s reads %q before it is defined", n.Op, v)
			}
			c.Inputs[i] = r
			a = max(a, anchor[v])
		}
		for i, o := range c.Outputs {
			name := b.Fresh()
			rename[o.Name] = name
			anchor[o.Name] = a
			c.Outputs[i].Name = name
		}
		after[a] = append(after[a], c)
	}
	merged := append([]*ir.Node(nil), after[-1]...)
	for i, n := range ts.Nodes {
		merged = append(merged, n)
		merged = append(merged, after[i]...)
	}
	ts.Nodes = merged
	for _, o := range up.Outputs {
		if in := up.Input(o.Updates); in != nil && in.Role == ir.GradAccum && !accumulate {
			continue // the accumulator reset: there is none
		}
		v, ok := rename[o.Value]
		if !ok {
			return 0, fmt.Errorf("update: output %q reads an unknown value %q", o.Name, o.Value)
		}
		ts.Outputs = append(ts.Outputs, &ir.Output{Name: o.Name, Value: v, Updates: o.Updates})
	}
	return len(up.Nodes), nil
}

// PerLayerModule reports whether m was compiled with per-layer updates
// (--optimizer <name>_per_layer): it has no update program, and its
// train_step (one micro-batch per update) or train_update (the last
// micro-batch of an accumulated update) updates every parameter inside the
// backward, reading the update's "lr".
func PerLayerModule(m *ir.Module) bool {
	g := m.Graph("train_step")
	if u := m.Graph("train_update"); u != nil {
		g = u
	}
	return g != nil && m.Graph("update") == nil && g.Input("lr") != nil
}
