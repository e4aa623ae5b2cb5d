package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// Gradients appends to b's graph the reverse-mode derivative of the value loss
// with respect to each value named in wrt, and returns wrt name → gradient value
// name. seed is the value of d(final)/d(loss): a value of loss's type, a rank-0
// value of the same dtype (broadcast to loss's shape), or "" for 1. A training step
// passes a runtime scalar such as 1/G for gradient accumulation over G micro-batches.
//
// Only nodes on a path from some wrt value to loss are differentiated, and only
// floating-point values carry gradients (integer values, Greater and Const carry
// none). Fan-out gradients are summed with Add. A wrt value that loss does not
// depend on gets a zero Const, so callers always receive a gradient of the wrt
// value's type. The rules per op are in grad_rules.go; an op without a rule on the
// path (such as SoftmaxCrossEntropyGrad, which has no second-order rule) is an error.
// Backward nodes carry the Name of the forward node they differentiate, so
// kernels and --explain output stay attributable to a module.
func Gradients(b *ir.Builder, loss string, wrt []string, seed string) (map[string]string, error) {
	return GradientsSaving(b, loss, wrt, seed, ir.InvalidDType)
}

// GradientsSaving is Gradients where the backward pass reads every saved
// activation in the narrower dtype saveAs (bf16-mixed's activations saved for
// backward in bf16): a forward value that a gradient rule reads — an input or
// the output of the node it differentiates — is, when it depends on some wrt
// value, is not one itself and is wider than saveAs, read as
// Cast(Cast(v, saveAs), v's dtype), one copy per value. The forward pass
// itself goes on with v; the memory plan keeps only the narrow copy alive
// into the backward pass. saveAs InvalidDType reads every value as it is.
func GradientsSaving(b *ir.Builder, loss string, wrt []string, seed string, saveAs ir.DType) (map[string]string, error) {
	if err := b.Err(); err != nil {
		return nil, err
	}
	g := b.G
	lt, ok := g.Types()[loss]
	if !ok {
		return nil, fmt.Errorf("graph %q: loss %q is not a value", g.Name, loss)
	}
	if !lt.DType.IsFloat() {
		return nil, fmt.Errorf("graph %q: loss %q is %v, not floating point", g.Name, loss, lt)
	}
	for _, w := range wrt {
		t := b.Type(w)
		if t.DType == ir.InvalidDType {
			return nil, fmt.Errorf("graph %q: cannot differentiate with respect to %q: not a value", g.Name, w)
		}
		if !t.DType.IsFloat() {
			return nil, fmt.Errorf("graph %q: cannot differentiate with respect to %q: %v is not floating point", g.Name, w, t)
		}
	}

	nodes := g.Nodes[:len(g.Nodes):len(g.Nodes)] // the forward part; backward nodes are appended after it
	// fromWrt: float values that depend differentiably on some wrt value.
	fromWrt := map[string]bool{}
	for _, w := range wrt {
		fromWrt[w] = true
	}
	for _, n := range nodes {
		if _, none := noGradient[n.Op]; none {
			continue
		}
		dep := false
		for _, in := range n.Inputs {
			dep = dep || fromWrt[in]
		}
		if dep {
			for _, o := range n.Outputs {
				if o.Type.DType.IsFloat() {
					fromWrt[o.Name] = true
				}
			}
		}
	}
	// toLoss: values loss depends on.
	toLoss := map[string]bool{loss: true}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		for _, o := range n.Outputs {
			if toLoss[o.Name] {
				for _, in := range n.Inputs {
					toLoss[in] = true
				}
				break
			}
		}
	}
	onPath := func(v string) bool { return fromWrt[v] && toLoss[v] }

	grads := map[string]string{}
	accumulate := func(v, d string) {
		if prev, ok := grads[v]; ok {
			grads[v] = b.Add(prev, d)
		} else {
			grads[v] = d
		}
	}

	// Seed d(loss).
	if onPath(loss) {
		d, err := seedGradient(b, loss, lt, seed)
		if err != nil {
			return nil, err
		}
		grads[loss] = d
	}

	// read is how a rule reads forward value v: v itself, or its saved copy.
	isWrt := map[string]bool{}
	for _, w := range wrt {
		isWrt[w] = true
	}
	saved := map[string]string{}
	read := func(v string) string {
		t := b.Type(v)
		if saveAs == ir.InvalidDType || !fromWrt[v] || isWrt[v] || !t.DType.IsFloat() || t.DType.Size() <= saveAs.Size() {
			return v
		}
		if s, ok := saved[v]; ok {
			return s
		}
		s := b.Op("Cast", ir.Attrs{"to": ir.String(t.DType.String())}, b.Op("Cast", ir.Attrs{"to": ir.String(saveAs.String())}, v))
		saved[v] = s
		return s
	}

	scope := b.Scope
	defer func() { b.Scope = scope }()
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		if len(n.Outputs) != 1 || !onPath(n.Outputs[0].Name) {
			if len(n.Outputs) > 1 {
				for _, o := range n.Outputs {
					if onPath(o.Name) {
						return nil, fmt.Errorf("graph %q: node %s has %d outputs; autodiff handles single-output ops only", g.Name, n, len(n.Outputs))
					}
				}
			}
			continue
		}
		dy, ok := grads[n.Outputs[0].Name]
		if !ok {
			continue // every use on the path carries no gradient (e.g. only Greater reads it)
		}
		need := make([]bool, len(n.Inputs))
		anyNeed := false
		for j, in := range n.Inputs {
			need[j] = onPath(in)
			anyNeed = anyNeed || need[j]
		}
		if !anyNeed {
			continue
		}
		rule, ok := gradRules[n.Op]
		if !ok {
			return nil, fmt.Errorf("graph %q: node %s: op %s has no gradient rule", g.Name, n, n.Op)
		}
		b.Scope = n.Name
		c := &gradCtx{b: b, n: n, need: need, read: read}
		dx, err := rule(c, dy)
		if err != nil {
			return nil, fmt.Errorf("graph %q: gradient of node %s: %w", g.Name, n, err)
		}
		if err := b.Err(); err != nil {
			return nil, fmt.Errorf("gradient of node %s: %w", n, err)
		}
		for j, d := range dx {
			if j < len(need) && need[j] && d != "" {
				accumulate(n.Inputs[j], d)
			}
		}
	}
	b.Scope = scope
	if len(saved) > 0 {
		placeSavedCopies(g, saved)
	}

	out := make(map[string]string, len(wrt))
	for _, w := range wrt {
		if d, ok := grads[w]; ok {
			out[w] = d
		} else {
			out[w] = b.Const(0, b.Type(w))
		}
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// placeSavedCopies moves the narrowing Cast of each saved value (saved maps a
// forward value to its widened copy) from the backward part, where the rule
// that read it appended it, to just after the value's producer, so that the
// wide value can die with its last forward use while the narrow copy lives on.
// (Saved values are never graph inputs: those are wrt values or constants.)
func placeSavedCopies(g *ir.Graph, saved map[string]string) {
	narrow := map[*ir.Node]bool{}
	after := map[string][]*ir.Node{} // forward value → its narrowing Cast
	producerOf := map[string]*ir.Node{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			producerOf[o.Name] = n
		}
	}
	for v, wide := range saved {
		w := producerOf[wide] // Cast(narrow → wide)
		if w == nil || len(w.Inputs) != 1 {
			continue
		}
		c := producerOf[w.Inputs[0]] // Cast(v → narrow)
		if c == nil || len(c.Inputs) != 1 || c.Inputs[0] != v {
			continue
		}
		narrow[c] = true
		after[v] = append(after[v], c)
	}
	nodes := make([]*ir.Node, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		if narrow[n] {
			continue
		}
		nodes = append(nodes, n)
		for _, o := range n.Outputs {
			nodes = append(nodes, after[o.Name]...)
		}
	}
	g.Nodes = nodes
}

// seedGradient returns the value used as d(loss): seed itself, seed broadcast to
// loss's shape, or a Const 1.
func seedGradient(b *ir.Builder, loss string, lt ir.Type, seed string) (string, error) {
	if seed == "" {
		return b.Const(1, lt), nil
	}
	st := b.Type(seed)
	switch {
	case st.DType == ir.InvalidDType:
		return "", fmt.Errorf("graph %q: seed %q is not a value", b.G.Name, seed)
	case st.Equal(lt):
		return seed, nil
	case st.DType == lt.DType && st.Rank() == 0:
		return b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(lt.Shape)}, seed), nil
	}
	return "", fmt.Errorf("graph %q: seed %q is %v; want %v or a %v scalar", b.G.Name, seed, st, lt, lt.DType)
}

// gradCtx is what a gradient rule sees: the builder, the node being
// differentiated and which of its inputs need a gradient.
type gradCtx struct {
	b    *ir.Builder
	n    *ir.Node
	need []bool
	read func(v string) string // a forward value as the backward pass reads it (GradientsSaving)
}

// in returns input i as the backward pass reads it; typ a value's type; out
// the node's output as the backward pass reads it.
func (c *gradCtx) in(i int) string         { return c.read(c.n.Inputs[i]) }
func (c *gradCtx) typ(v string) ir.Type    { return c.b.Type(v) }
func (c *gradCtx) out() string             { return c.read(c.n.Outputs[0].Name) }
func (c *gradCtx) dtype() ir.DType         { return c.n.Outputs[0].Type.DType }
func (c *gradCtx) scalar(v float64) string { return c.b.Const(v, ir.Type{DType: c.dtype()}) }

// reduceTo sums v over the axes that broadcasting added or stretched so that
// the result has shape: the adjoint of NumPy broadcasting from shape to v's shape.
func reduceTo(b *ir.Builder, v string, shape []int) string {
	vs := b.Type(v).Shape
	if ir.ShapeEqual(vs, shape) {
		return v
	}
	extra := len(vs) - len(shape)
	var axes []int
	for i := range vs {
		if i < extra || (shape[i-extra] == 1 && vs[i] != 1) {
			axes = append(axes, i)
		}
	}
	if len(axes) > 0 {
		v = b.Reduce("ReduceSum", v, false, axes...)
	}
	if !ir.ShapeEqual(b.Type(v).Shape, shape) {
		v = b.Reshape(v, shape...)
	}
	return v
}

// allAxes lists 0..rank-1.
func allAxes(rank int) []int {
	axes := make([]int, rank)
	for i := range axes {
		axes[i] = i
	}
	return axes
}

// autodiff is the "autodiff" pass: it derives the "train_step" graph from
// "forward". train_step runs one micro-batch: the forward, then the backward
// seeded with the runtime scalar "grad_scale" (the trainer passes 1/G when it
// accumulates G micro-batches, like the seed's loss/G), and adds each trainable
// parameter P's gradient to its accumulator input "P.grad" (role GradAccum,
// zeros). Outputs: "loss" (unscaled) and one "P.grad" output per parameter
// that updates its accumulator. A forward without a "loss" output (an inference
// model) gets no train_step.
func autodiff(s *State) error {
	m := s.Module
	if m.Graph("train_step") != nil {
		return fmt.Errorf("the module already has a \"train_step\" graph")
	}
	fwd := m.Graph("forward")
	if fwd == nil {
		return fmt.Errorf("the module has no \"forward\" graph")
	}
	lossOut := fwd.Output("loss")
	if lossOut == nil {
		s.Note("autodiff: forward has no \"loss\" output: no train_step (inference only)")
		return nil
	}
	g := fwd.Clone()
	g.Name = "train_step"
	b := ir.BuilderFor(g)
	lt := b.Type(lossOut.Value)
	st := computeDType(lt.DType)
	seed := b.AddInput("grad_scale", ir.Type{DType: st}, ir.Scalar, nil)
	if st != lt.DType {
		seed = b.Op("Cast", ir.Attrs{"to": ir.String(lt.DType.String())}, seed)
	}
	params := trainable(g)
	wrt := make([]string, len(params))
	for i, p := range params {
		wrt[i] = p.Name
	}
	saveAs := ir.InvalidDType
	if s.Options.BF16Mixed {
		saveAs = ir.BF16
	}
	grads, err := GradientsSaving(b, lossOut.Value, wrt, seed, saveAs)
	if err != nil {
		return err
	}
	outs := []*ir.Output{{Name: "loss", Value: lossOut.Value}}
	var elems int64
	for _, p := range params {
		acc := b.AddInput(p.Name+".grad", p.Type, ir.GradAccum, &ir.Init{Kind: ir.InitZeros})
		if acc == "" {
			return b.Err()
		}
		g.Input(acc).Of = p.Name
		outs = append(outs, &ir.Output{Name: acc, Value: b.Add(acc, grads[p.Name]), Updates: acc})
		elems += p.Type.NumElements()
	}
	if err := b.Err(); err != nil {
		return err
	}
	g.Outputs = outs
	dead := deadCodeElim(g)
	hoistAccumulations(g)
	insertGraphAfter(m, "forward", g)
	s.Note("autodiff: train_step differentiates %d parameters (%d elements) with %d nodes (%d forward nodes unused by it removed)",
		len(params), elems, len(g.Nodes), dead)
	return nil
}

// hoistAccumulations moves each accumulation "P.grad + g" to right after
// the node that produces g, so that the schedule (node order) adds every
// gradient into its accumulator (in place, see PlanMemory) as soon as it is
// complete: the transient gradient then dies at once instead of living until
// the end of the backward, where all of them would be live together (the
// whole model's gradients in the arena).
func hoistAccumulations(g *ir.Graph) {
	producer := map[string]*ir.Node{}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			producer[o.Name] = n
		}
	}
	after := map[*ir.Node][]*ir.Node{} // producer of g → its accumulations
	moved := map[*ir.Node]bool{}
	for _, o := range g.Outputs {
		in := g.Input(o.Updates)
		n := producer[o.Value]
		if in == nil || in.Role != ir.GradAccum || n == nil || n.Op != "Add" || len(n.Inputs) != 2 || n.Inputs[0] != in.Name {
			continue
		}
		if p := producer[n.Inputs[1]]; p != nil && p != n {
			after[p] = append(after[p], n)
			moved[n] = true
		}
	}
	nodes := make([]*ir.Node, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		if moved[n] {
			continue
		}
		nodes = append(nodes, n)
		nodes = append(nodes, after[n]...)
	}
	g.Nodes = nodes
}

// trainable returns the graph's trainable parameters: floating-point Param inputs.
func trainable(g *ir.Graph) []*ir.Input {
	var out []*ir.Input
	for _, in := range g.Inputs {
		if in.Role == ir.Param && in.Type.DType.IsFloat() {
			out = append(out, in)
		}
	}
	return out
}

// computeDType is the dtype of runtime scalars and optimizer arithmetic for
// tensors of dtype d: f64 for f64 graphs (the exact reference), f32 otherwise.
func computeDType(d ir.DType) ir.DType {
	if d == ir.F64 {
		return ir.F64
	}
	return ir.F32
}

// insertGraphAfter adds g to the module right after the graph named after (at
// the end when there is none).
func insertGraphAfter(m *ir.Module, after string, g *ir.Graph) {
	for i, h := range m.Graphs {
		if h.Name == after {
			m.Graphs = append(m.Graphs[:i+1], append([]*ir.Graph{g}, m.Graphs[i+1:]...)...)
			return
		}
	}
	m.Graphs = append(m.Graphs, g)
}
