//go:build !slc_runtime

package codegen

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// program builds one artifact.Program from a graph, its groups in schedule
// order and its memory plan.
//
// Slots: graph inputs are state (by input name), data or scalars by role;
// values the plan puts in the arena keep its offsets; a state update the plan
// writes in place shares the state's slot; a view (a Reshape group) shares its
// root's storage. The arena then grows by two regions the plan does not
// know: transient buffers of multi-call lowerings (reused from group to
// group, so the region is the largest group's need) and, live to the end,
// copies of graph outputs that are views of non-arena storage and constants
// the plan leaves to be filled after the run (Fill).
type program struct {
	g     *ir.Graph
	plan  *passes.MemoryPlan
	em    *lower.Emitter
	lab   *labeler // names steps for profiles (labels.go)
	p     *artifact.Program
	types map[string]ir.Type

	slotOf   map[string]int32 // value → slot
	producer map[string]*ir.Node
	outputs  map[string]bool // values returned by the graph

	temps      []int32 // slots in the temps region (offsets relative to its start)
	tempsMax   int64
	extras     []int32 // slots in the extras region (offsets relative to its start)
	extraTop   int64
	notes      []string
	batchFills bool // cuda: fills as multi-tensor kernels (groups are batched before, batch.go)
}

// buildProgram runs the construction; see program.
func buildProgram(g *ir.Graph, groups []*passes.Group, plan *passes.MemoryPlan, em *lower.Emitter, w io.Writer, batch bool) (*artifact.Program, error) {
	b := &program{
		g: g, plan: plan, em: em, lab: newLabeler(g),
		p:          &artifact.Program{Name: g.Name},
		batchFills: batch,
		types:      g.Types(),
		slotOf:     map[string]int32{},
		producer:   g.Producers(),
		outputs:    map[string]bool{},
	}
	for _, o := range g.Outputs {
		b.outputs[o.Value] = true
	}
	if err := b.inputSlots(); err != nil {
		return nil, err
	}
	if err := b.valueSlots(groups); err != nil {
		return nil, err
	}
	for i := 0; i < len(groups); {
		j := i + 1
		for j < len(groups) && groups[j].ID == groups[i].ID { // a batch (batch.go)
			j++
		}
		var err error
		if j-i > 1 {
			err = b.batch(groups[i:j])
		} else {
			err = b.group(groups[i])
		}
		if err != nil {
			return nil, err
		}
		i = j
	}
	if err := b.finishOutputs(); err != nil {
		return nil, err
	}
	// Place the two extra regions above the plan's arena.
	tempBase := align(plan.ArenaBytes)
	extraBase := align(tempBase + b.tempsMax)
	for _, s := range b.temps {
		b.p.Slots[s].Offset += tempBase
	}
	for _, s := range b.extras {
		b.p.Slots[s].Offset += extraBase
	}
	b.p.ArenaBytes = align(extraBase + b.extraTop)
	explain(w, "graph %s: %d nodes in %d groups, %d steps, %d slots; arena %d bytes (plan %d, temporaries %d, extra %d), scratch %d bytes/thread",
		g.Name, len(g.Nodes), len(groups), len(b.p.Steps), len(b.p.Slots), b.p.ArenaBytes, plan.ArenaBytes, b.tempsMax, b.extraTop, b.p.ScratchBytes)
	for _, n := range b.notes {
		explain(w, "  %s", n)
	}
	return b.p, nil
}

func align(n int64) int64 { return (n + passes.Alignment - 1) / passes.Alignment * passes.Alignment }

// addSlot appends a slot and returns its index.
func (b *program) addSlot(s artifact.Slot) int32 {
	b.p.Slots = append(b.p.Slots, s)
	return int32(len(b.p.Slots) - 1)
}

// inputSlots gives every graph input its slot.
func (b *program) inputSlots() error {
	for _, in := range b.g.Inputs {
		var kind artifact.SlotKind
		switch {
		case in.Role.IsState():
			kind = artifact.SlotState
		case in.Role == ir.Data:
			kind = artifact.SlotData
		case in.Role == ir.Scalar:
			kind = artifact.SlotScalar
		default:
			return fmt.Errorf("input %q has role %v", in.Name, in.Role)
		}
		b.slotOf[in.Name] = b.addSlot(artifact.Slot{Name: in.Name, Type: in.Type, Kind: kind})
	}
	return nil
}

// valueSlots gives slots to the values the plan stores, in schedule order
// (views after their roots). Fill values get theirs in finishOutputs.
func (b *program) valueSlots(groups []*passes.Group) error {
	for _, gr := range groups {
		for _, v := range gr.Outputs {
			buf, ok := b.plan.Buffers[v]
			if !ok {
				return fmt.Errorf("value %q has no buffer in the memory plan", v)
			}
			switch buf.Kind {
			case passes.InArena:
				b.slotOf[v] = b.addSlot(artifact.Slot{Name: v, Type: b.types[v], Kind: artifact.SlotArena, Offset: buf.Offset})
			case passes.InPlace:
				s, ok := b.slotOf[buf.Alias]
				if !ok {
					return fmt.Errorf("value %q is written in place of %q, which is not an input", v, buf.Alias)
				}
				b.slotOf[v] = s
			case passes.View:
				root, ok := b.slotOf[buf.Alias]
				if !ok {
					return fmt.Errorf("view %q of %q: the root has no slot yet", v, buf.Alias)
				}
				if rs := b.p.Slots[root]; rs.Kind == artifact.SlotArena {
					b.slotOf[v] = b.addSlot(artifact.Slot{Name: v, Type: b.types[v], Kind: artifact.SlotArena, Offset: rs.Offset})
				} else {
					b.slotOf[v] = root // kernels know the shape; group() copies it when it is returned
				}
			case passes.Fill:
			case passes.Persistent:
				return fmt.Errorf("value %q is computed by a kernel but planned as a graph input", v)
			default:
				return fmt.Errorf("value %q: unknown buffer kind %v", v, buf.Kind)
			}
		}
	}
	return nil
}

// extraSlot adds an arena slot for v in the extras region.
func (b *program) extraSlot(name string, t ir.Type) int32 {
	s := b.addSlot(artifact.Slot{Name: name, Type: t, Kind: artifact.SlotArena, Offset: b.extraTop})
	b.extraTop += align(t.Bytes())
	b.extras = append(b.extras, s)
	return s
}

// group lowers one group and appends its steps.
func (b *program) group(gr *passes.Group) error {
	lg, inSlots, outSlots, err := b.prepare(gr)
	if lg == nil || err != nil {
		return err
	}
	return b.emit(lg, inSlots, outSlots, "")
}

// batch lowers a batch of groups (batchGroups) as one multi-tensor kernel.
func (b *program) batch(grs []*passes.Group) error {
	var lgs []*lower.Group
	var args []int32
	for _, gr := range grs {
		lg, inSlots, outSlots, err := b.prepare(gr)
		if err != nil {
			return err
		}
		if lg == nil {
			continue
		}
		lgs = append(lgs, lg)
		args = append(append(args, inSlots...), outSlots...)
	}
	switch len(lgs) {
	case 0:
		return nil
	case 1:
		return b.emit(lgs[0], args[:len(lgs[0].Inputs)], args[len(lgs[0].Inputs):], "")
	}
	if b.em.InstanceBatch(lgs[0]) {
		return b.instances(lgs, args)
	}
	return b.multi(lgs, args)
}

// instances appends the steps running every group of lgs (groups of
// lower.InstanceKey "inst", independent of each other) as instances
// (lower's Instances), args the groups' inputs and outputs one group after
// another: launch c runs call c of every group's lowering that has one
// (the x·Aᵀ GEMMs of a layer's q, k and v projections, then their second
// GEMMs, …: each group's calls stay in order), the groups of one lowering
// side by side as one part. Each group gets temporaries of its own, side
// by side in the temps region.
func (b *program) instances(lgs []*lower.Group, args []int32) error {
	type inst struct {
		lg      *lower.Group
		l       *lower.Lowering
		in, out []int32
		temps   []int32
	}
	insts := make([]inst, len(lgs))
	off := 0
	for i, lg := range lgs {
		l, err := b.em.Lower(lg)
		if err != nil {
			return err
		}
		n := len(lg.Inputs) + len(lg.Outputs)
		insts[i] = inst{lg: lg, l: l, in: args[off : off+len(lg.Inputs)], out: args[off+len(lg.Inputs) : off+n]}
		off += n
		if l.Note != "" {
			who := lg.Nodes[0].Name
			if who == "" {
				who = lg.Outputs[0].Name
			}
			b.notes = append(b.notes, who+": "+l.Note)
		}
	}
	// The groups of one lowering next to each other (stable: the schedule's
	// order otherwise).
	sort.SliceStable(insts, func(i, j int) bool { return describeCalls(insts[i].l) < describeCalls(insts[j].l) })
	var top int64
	calls := 0
	for i := range insts {
		for j, t := range insts[i].l.Temps {
			s := b.addSlot(artifact.Slot{Name: fmt.Sprintf("%s.tmp%d", insts[i].lg.Outputs[0].Name, j), Type: t, Kind: artifact.SlotArena, Offset: top})
			top += align(t.Bytes())
			b.temps = append(b.temps, s)
			insts[i].temps = append(insts[i].temps, s)
		}
		b.p.ScratchBytes = max(b.p.ScratchBytes, insts[i].l.ScratchBytes)
		calls = max(calls, len(insts[i].l.Calls))
	}
	b.tempsMax = max(b.tempsMax, top)
	for c := 0; c < calls; c++ {
		var st artifact.Step
		var parts []lower.Part
		var scratch int64
		var who []*lower.Group
		var part []string
		for _, x := range insts {
			if c >= len(x.l.Calls) {
				continue
			}
			call := x.l.Calls[c]
			if n := len(parts); n > 0 && parts[n-1].Kernel == call.Kernel {
				parts[n-1].N++
			} else {
				parts = append(parts, lower.Part{Kernel: call.Kernel, Args: len(call.Args), N: 1})
			}
			for _, a := range call.Args {
				switch a.Kind {
				case lower.ArgInput:
					st.Args = append(st.Args, x.in[a.Index])
				case lower.ArgOutput:
					st.Args = append(st.Args, x.out[a.Index])
				case lower.ArgTemp:
					st.Args = append(st.Args, x.temps[a.Index])
				}
			}
			scratch = max(scratch, x.l.ScratchBytes)
			kernels := make([]string, len(x.l.Calls))
			for i, c := range x.l.Calls {
				kernels[i] = c.Kernel
			}
			who = append(who, x.lg)
			part = append(part, callPart(kernels, c))
		}
		label := b.lab.label(who[0].Nodes, part[0], "")
		if len(who) == 1 {
			// One group's call: its own kernel, its own launch.
			st.Kernel = parts[0].Kernel
			st.Label = label
		} else {
			name, err := b.em.Instances(parts)
			if err != nil {
				return err
			}
			st.Kernel = name
			st.Label = fmt.Sprintf("%s and %d more (instances)", label, len(who)-1)
		}
		if err := b.launch(&st, scratch); err != nil {
			return err
		}
		b.p.Steps = append(b.p.Steps, st)
	}
	return nil
}

// describeCalls names a lowering's kernels for a message.
func describeCalls(l *lower.Lowering) string {
	names := make([]string, len(l.Calls))
	for i, c := range l.Calls {
		names[i] = c.Kernel
	}
	return strings.Join(names, ", ")
}

// multi appends the step of one multi-tensor kernel running lgs, args the
// groups' inputs and outputs one group after another.
func (b *program) multi(lgs []*lower.Group, args []int32) error {
	name, err := b.em.MultiTensor(lgs)
	if err != nil {
		return err
	}
	st := artifact.Step{Kernel: name, Args: args, Label: b.multiLabel(lgs)}
	if err := b.launch(&st, 0); err != nil {
		return err
	}
	b.p.Steps = append(b.p.Steps, st)
	return nil
}

// multiLabel names a multi-tensor step by its first group's label and the
// number of groups it runs ("layers.0.mlp.up_proj.lora_A update Mul+… and 41
// more").
func (b *program) multiLabel(lgs []*lower.Group) string {
	first := b.lab.label(lgs[0].Nodes, "", "")
	if len(lgs) == 1 {
		return first
	}
	return fmt.Sprintf("%s and %d more (multi-tensor)", first, len(lgs)-1)
}

// numelOf is the number of elements of shape.
func numelOf(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// prepare turns a scheduled group into the group to lower with its input
// and output slots; a nil group when it needs no kernel (a view, a group
// whose results nothing uses, a constant filled after the run).
func (b *program) prepare(gr *passes.Group) (*lower.Group, []int32, []int32, error) {
	if gr.Kind == passes.GroupView {
		// No kernel, unless a returned view of storage outside the arena
		// needs a slot of its own shape: then copy it.
		for _, v := range gr.Outputs {
			if !b.outputs[v] || b.p.Slots[b.slotOf[v]].Kind == artifact.SlotArena {
				continue
			}
			n := b.producer[v]
			in := n.Inputs[0]
			s := b.extraSlot(v, b.types[v])
			lg := &lower.Group{Kind: lower.Single, Nodes: []*ir.Node{n},
				Inputs:  []lower.Operand{{Name: in, Type: b.types[in]}},
				Outputs: []lower.Operand{{Name: v, Type: b.types[v]}}}
			if err := b.emit(lg, []int32{b.slotOf[in]}, []int32{s}, ""); err != nil {
				return nil, nil, nil, err
			}
			b.slotOf[v] = s
		}
		return nil, nil, nil, nil
	}
	if len(gr.Outputs) == 0 {
		b.notes = append(b.notes, fmt.Sprintf("group %d (%s) computes nothing the program uses: skipped", gr.ID, gr.Nodes[0]))
		return nil, nil, nil, nil
	}
	fillOnly := true
	for _, v := range gr.Outputs {
		fillOnly = fillOnly && b.plan.Buffers[v].Kind == passes.Fill
	}
	if fillOnly {
		return nil, nil, nil, nil // filled after the run, see finishOutputs
	}
	lg := &lower.Group{Space: gr.Space, Nodes: gr.Nodes}
	switch gr.Kind {
	case passes.GroupElementwise:
		lg.Kind = lower.Elementwise
	case passes.GroupReduce:
		lg.Kind = lower.Reduce
	case passes.GroupKernel:
		lg.Kind = lower.Single
	case passes.GroupLinearCrossEntropy:
		lg.Kind = lower.LinearCrossEntropy
	case passes.GroupBlockwise:
		lg.Kind, lg.Parts = lower.Blockwise, gr.Parts
	default:
		return nil, nil, nil, fmt.Errorf("group %d: unknown kind %v", gr.ID, gr.Kind)
	}
	inputs := gr.Inputs
	if lg.Kind == lower.Single {
		if len(gr.Nodes) != 1 {
			return nil, nil, nil, fmt.Errorf("group %d: a kernel group holds %d nodes, not 1", gr.ID, len(gr.Nodes))
		}
		inputs = gr.Nodes[0].Inputs // one operand per node input, repeats included
	}
	var inSlots, outSlots []int32
	index := map[string]int{}
	for i, v := range inputs {
		s, ok := b.slotOf[v]
		if !ok {
			return nil, nil, nil, fmt.Errorf("group %d reads %q, which has no storage", gr.ID, v)
		}
		lg.Inputs = append(lg.Inputs, lower.Operand{Name: v, Type: b.types[v]})
		inSlots = append(inSlots, s)
		index[v] = i
	}
	for j, v := range gr.Outputs {
		buf := b.plan.Buffers[v]
		if buf.Kind == passes.Fill {
			return nil, nil, nil, fmt.Errorf("group %d writes the constant %q together with other values", gr.ID, v)
		}
		lg.Outputs = append(lg.Outputs, lower.Operand{Name: v, Type: b.types[v]})
		outSlots = append(outSlots, b.slotOf[v])
		if buf.Kind == passes.InPlace {
			if i, ok := index[buf.Alias]; ok {
				if lg.InPlace == nil {
					lg.InPlace = map[int]int{}
				}
				lg.InPlace[j] = i
			}
		}
	}
	return lg, inSlots, outSlots, nil
}

// emit lowers lg and appends its calls as steps, with temporaries placed
// in the temps region; scope, when set, replaces the nodes' in the steps'
// labels.
func (b *program) emit(lg *lower.Group, inSlots, outSlots []int32, scope string) error {
	l, err := b.em.Lower(lg)
	if err != nil {
		return err
	}
	if l.Note != "" {
		who := lg.Nodes[0].Name
		if who == "" {
			who = lg.Outputs[0].Name
		}
		b.notes = append(b.notes, who+": "+l.Note)
	}
	var tempSlots []int32
	var top int64
	for i, t := range l.Temps {
		s := b.addSlot(artifact.Slot{Name: fmt.Sprintf("%s.tmp%d", lg.Outputs[0].Name, i), Type: t, Kind: artifact.SlotArena, Offset: top})
		top += align(t.Bytes())
		b.temps = append(b.temps, s)
		tempSlots = append(tempSlots, s)
	}
	b.tempsMax = max(b.tempsMax, top)
	b.p.ScratchBytes = max(b.p.ScratchBytes, l.ScratchBytes)
	kernels := make([]string, len(l.Calls))
	for i, c := range l.Calls {
		kernels[i] = c.Kernel
	}
	for i, c := range l.Calls {
		st := artifact.Step{Kernel: c.Kernel, Label: b.lab.label(lg.Nodes, callPart(kernels, i), scope)}
		if lg.Kind == lower.LinearCrossEntropy {
			st.Label = b.lab.lossHead(lg.Nodes, c.Kernel)
		}
		if err := b.launch(&st, l.ScratchBytes); err != nil {
			return err
		}
		for _, a := range c.Args {
			switch a.Kind {
			case lower.ArgInput:
				st.Args = append(st.Args, inSlots[a.Index])
			case lower.ArgOutput:
				st.Args = append(st.Args, outSlots[a.Index])
			case lower.ArgTemp:
				st.Args = append(st.Args, tempSlots[a.Index])
			}
		}
		b.p.Steps = append(b.p.Steps, st)
	}
	return nil
}

// finishOutputs fills the constants that only graph outputs read (after
// every other step, into the updated state's own slot when that is safe)
// and lists the program's outputs.
func (b *program) finishOutputs() error {
	type fill struct {
		lg   *lower.Group
		slot int32
		who  string // the state or output it fills (its label), not its shared Const
	}
	var fills []fill
	returned := map[int32]int{} // slot → outputs returning it
	for _, o := range b.g.Outputs {
		if s, ok := b.slotOf[o.Value]; ok {
			returned[s]++
		}
	}
	for _, o := range b.g.Outputs {
		buf, planned := b.plan.Buffers[o.Value]
		if planned && buf.Kind == passes.Fill {
			n := b.producer[o.Value]
			t := b.types[o.Value]
			var s int32
			if st, ok := b.slotOf[o.Updates]; ok && o.Updates != "" && b.p.Slots[st].Kind == artifact.SlotState &&
				b.p.Slots[st].Type.Equal(t) && returned[st] == 0 {
				s = st
				returned[st]++ // one fill per state
			} else {
				s = b.extraSlot(o.Name+".fill", t)
			}
			lg := &lower.Group{Kind: lower.Elementwise, Space: t.Shape, Nodes: []*ir.Node{n},
				Outputs: []lower.Operand{{Name: o.Value, Type: t}}}
			who := o.Updates
			if who == "" {
				who = o.Name
			}
			fills = append(fills, fill{lg, s, who})
			b.p.Outputs = append(b.p.Outputs, artifact.Output{Name: o.Name, Slot: s, Updates: o.Updates})
			continue
		}
		s, ok := b.slotOf[o.Value]
		if !ok {
			return fmt.Errorf("output %q: value %q has no storage", o.Name, o.Value)
		}
		if st := b.p.Slots[s]; !st.Type.Equal(b.types[o.Value]) {
			return fmt.Errorf("output %q: slot %q is %v, the value is %v", o.Name, st.Name, st.Type, b.types[o.Value])
		}
		b.p.Outputs = append(b.p.Outputs, artifact.Output{Name: o.Name, Slot: s, Updates: o.Updates})
	}
	// The fills, after every other step: on the cuda device as few
	// multi-tensor kernels as batches allow (they are independent).
	for i := 0; i < len(fills); {
		j, elems := i+1, numelOf(fills[i].lg.Space)
		for b.batchFills && j < len(fills) && j-i < maxBatchGroups && elems+numelOf(fills[j].lg.Space) <= maxBatchElems && b.em.BatchKey(fills[j].lg) == "ew" && b.em.BatchKey(fills[i].lg) == "ew" {
			elems += numelOf(fills[j].lg.Space)
			j++
		}
		if j-i == 1 {
			if err := b.emit(fills[i].lg, nil, []int32{fills[i].slot}, fills[i].who); err != nil {
				return err
			}
			i = j
			continue
		}
		var lgs []*lower.Group
		var args []int32
		for _, f := range fills[i:j] {
			lgs = append(lgs, f.lg)
			args = append(args, f.slot)
		}
		if err := b.multi(lgs, args); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// launch records a cuda step's launch geometry, the one the lowering chose
// for its kernel, with the lowering's scratch when the kernel uses any and
// the grid capped so that its scratch areas fit artifact.MaxScratchBytes
// (64-byte strides, as the runtime lays them out). CPU steps keep none.
func (b *program) launch(st *artifact.Step, scratch int64) error {
	l, ok := b.em.Launch(st.Kernel)
	if !ok {
		return nil
	}
	st.Grid, st.Block, st.SharedBytes = int32(l.Grid), int32(l.Block), int32(l.SharedBytes)
	st.Flops, st.Bytes, st.TensorCore = l.Flops, l.Bytes, l.TensorCore
	if l.Scratch && scratch > 0 {
		stride := align(scratch)
		if stride*int64(l.Block) > artifact.MaxScratchBytes {
			return fmt.Errorf("kernel %s: %d bytes of scratch per thread do not fit one block of %d threads in %d bytes", st.Kernel, scratch, l.Block, artifact.MaxScratchBytes)
		}
		st.Grid = int32(min(int64(st.Grid), artifact.MaxScratchBytes/(stride*int64(l.Block))))
		st.ScratchBytes = scratch
	}
	return nil
}
