//go:build !slc_runtime

package codegen

import (
	"slices"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// Step labels name each kernel call for a profile by its layer, direction
// and op ("layers.3.mlp.up_proj dW", "layers.0.mlp backward Mul+Sigmoid"):
// kernels are shared by every layer of the same shape, so the kernel's
// symbol says neither. The layer is the scope the front end recorded on
// the group's nodes (autodiff keeps the forward node's), without "model.";
// the direction is the graph's part: update for the update graph (and, in
// a per-layer train_step, for groups whose last node is named after a
// parameter, as the optimizer names its nodes); in a
// graph that returns a loss, forward for what the loss depends on and
// backward for the rest (the gradients, and W = B·(A·scale) + S, rebuilt
// for dx); forward in any other graph. A backward product of a Linear or LowRankSparseAdd layer is
// named by what it computes (autodiff's rules): dx = dy·W, dW = dyᵀ·x,
// dB = dW·(A·scale)ᵀ, dA = Bᵀ·dW, W = B·(A·scale) (rebuilt for dx).

// labeler labels the groups of one graph.
type labeler struct {
	graph    string
	scalar   map[string]bool // rank-0 values: shared scalars (an optimizer's bias corrections) don't name a layer
	backward map[string]bool // values the loss does not depend on, in a graph returning one
	state    map[string]bool // values that are state inputs, or casts/reshapes of them
	products map[string]bool // scopes of Linear and LowRankSparseAdd nodes
	params   map[string]bool // Param inputs: the scope of an update's nodes (per-layer updates inside train_step)
}

func newLabeler(g *ir.Graph) *labeler {
	l := &labeler{graph: g.Name, scalar: map[string]bool{}, backward: map[string]bool{}, state: map[string]bool{}, products: map[string]bool{}}
	for v, t := range g.Types() {
		l.scalar[v] = len(t.Shape) == 0
	}
	l.params = map[string]bool{}
	for _, in := range g.Inputs {
		if in.Role.IsState() {
			l.state[in.Name] = true
		}
		if in.Role == ir.Param {
			l.params[in.Name] = true
		}
	}
	loss := ""
	for _, o := range g.Outputs {
		if o.Name == "loss" {
			loss = o.Value
		}
	}
	forward := map[string]bool{loss: loss != ""}
	for i := len(g.Nodes) - 1; i >= 0; i-- { // reverse topological order
		n := g.Nodes[i]
		feeds := false
		for _, o := range n.Outputs {
			feeds = feeds || forward[o.Name]
		}
		for _, v := range n.Inputs {
			forward[v] = forward[v] || feeds
		}
	}
	for _, n := range g.Nodes { // topological order
		if n.Op == "Linear" || n.Op == "LowRankSparseAdd" {
			l.products[n.Name] = true
		}
		st := len(n.Inputs) > 0 && (n.Op == "Cast" || n.Op == "Reshape" || n.Op == "Transpose")
		for _, v := range n.Inputs {
			st = st && l.state[v]
		}
		for _, o := range n.Outputs {
			l.backward[o.Name] = loss != "" && !forward[o.Name]
			l.state[o.Name] = st
		}
	}
	return l
}

// label names a group of nodes; part names one call of a multi-call
// lowering ("" for a one-call group); scope, when set, is the layer.
func (l *labeler) label(nodes []*ir.Node, part, scope string) string {
	if scope == "" {
		scope = commonScope(l.scoping(nodes))
	} else {
		scope = strings.TrimPrefix(scope, "model.")
	}
	dir := "forward"
	switch {
	case l.graph == "update":
		dir = "update"
	case l.backward[nodes[len(nodes)-1].Outputs[0].Name] && l.params[nodes[len(nodes)-1].Name]:
		dir = "update" // a per-layer update inside the backward: the optimizer names nodes after their parameter

	case l.backward[nodes[len(nodes)-1].Outputs[0].Name]:
		dir = "backward"
	}
	op := opKinds(nodes)
	if n := nodes[0]; len(nodes) == 1 && n.Op == "MatMul" && dir == "backward" && l.products[n.Name] {
		dir, op = l.productRole(n), ""
	}
	words := []string{}
	for _, w := range []string{scope, dir, op, part} {
		if w != "" {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

// scoping is the nodes whose names say the layer: not the constants and
// rank-0 values, which CSE shares among layers under the first one's name
// (the update's bias corrections), unless there is nothing else.
func (l *labeler) scoping(nodes []*ir.Node) []*ir.Node {
	var out []*ir.Node
	for _, n := range nodes {
		if n.Op != "Const" && !(len(n.Outputs) > 0 && l.scalar[n.Outputs[0].Name]) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nodes
	}
	return out
}

// lossHead labels a call of the chunked loss head (fuse-linear-xent: the
// lm_head product, the cross-entropy and, in training, their backward
// products, chunk by chunk): by the product's layer and what the call
// does, "lm_head + loss forward (logits chunk)", "lm_head + loss (softmax,
// loss, dlogits)", "lm_head dx+dW".
func (l *labeler) lossHead(nodes []*ir.Node, kernel string) string {
	scope := ""
	for _, n := range nodes {
		if n.Op == "Linear" || n.Op == "MatMul" {
			scope = strings.TrimPrefix(n.Name, "model.")
			break
		}
	}
	if scope == "" {
		scope = commonScope(l.scoping(nodes))
	}
	switch {
	case strings.Contains(kernel, "_bwd_c"):
		return scope + " dx+dW (chunked with the loss)"
	case strings.Contains(kernel, "_rows_c"):
		return scope + " + loss (softmax, loss, dlogits; chunked)"
	}
	return scope + " + loss forward (logits chunk)"
}

// productRole names a backward MatMul of a Linear or SLTrain layer.
func (l *labeler) productRole(n *ir.Node) string {
	ta := n.Attrs.GetInt("transpose_a", 0) != 0
	tb := n.Attrs.GetInt("transpose_b", 0) != 0
	weightFirst := l.state[n.Inputs[0]]
	switch {
	case ta && !tb && weightFirst:
		return "dA"
	case ta && !tb:
		return "dW"
	case tb && !ta:
		return "dB"
	case !ta && !tb && weightFirst:
		return "W"
	case !ta && !tb:
		return "dx"
	}
	return "backward MatMul"
}

// commonScope is the longest dotted prefix shared by the nodes' names,
// without "model.".
func commonScope(nodes []*ir.Node) string {
	var parts []string
	first := true
	for _, n := range nodes {
		if n.Name == "" {
			continue
		}
		p := strings.Split(n.Name, ".")
		if first {
			parts, first = p, false
			continue
		}
		k := 0
		for k < len(parts) && k < len(p) && parts[k] == p[k] {
			k++
		}
		parts = parts[:k]
	}
	if len(parts) > 0 && parts[0] == "model" {
		parts = parts[1:]
	}
	return strings.Join(parts, ".")
}

// opKinds names what a group computes: its ops in order, without repeats,
// constants and trailing relabelling Reshapes; at most three, then "…".
func opKinds(nodes []*ir.Node) string {
	var ops []string
	for i, n := range nodes {
		if n.Op == "Const" || (n.Op == "Reshape" && i == len(nodes)-1 && len(nodes) > 1) || slices.Contains(ops, n.Op) {
			continue
		}
		ops = append(ops, n.Op)
	}
	if len(ops) == 0 && len(nodes) > 0 {
		return "Fill" // constants only: a buffer set to a value
	}
	if len(ops) > 3 {
		ops = append(ops[:3], "…")
	}
	return strings.Join(ops, "+")
}

// callPart names call i of a lowering's calls by its kernel's suffix (the
// part after what every call's name shares): W, sparse, y, … of an SLTrain
// layer's merged or factored lowering.
func callPart(kernels []string, i int) string {
	if len(kernels) < 2 {
		return ""
	}
	pre := kernels[0]
	for _, k := range kernels[1:] {
		n := 0
		for n < len(pre) && n < len(k) && pre[n] == k[n] {
			n++
		}
		pre = pre[:n]
	}
	pre = pre[:strings.LastIndex(pre, "_")+1] // whole suffixes: _s and _sum differ in more than "um"
	suffix := strings.TrimLeft(kernels[i][len(pre):], "_")
	if w, ok := callParts[suffix]; ok {
		return w
	}
	return suffix
}

// callParts are the suffixes the multi-call lowerings give their calls.
var callParts = map[string]string{
	"w": "(W = B·A)", "s": "(sparse)", "y": "(GEMM)", "t": "(x·Aᵀ)", "r": "(round)", "c": "(round factors)", "sum": "(sum)",
}
