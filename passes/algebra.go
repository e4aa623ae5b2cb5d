package passes

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// algebra applies algebraic simplifications, each an exact identity, written
// as data in the three tables below: an element-wise op with a neutral Const
// operand (x·1, 1·x, x+0, 0+x, x−0, x/1, x^1), a no-op (Identity, a Cast,
// Reshape or Expand to the value's own type, a Transpose by the identity
// permutation), and a composition of two data movements into one (transpose of
// transpose, reshape of reshape, expand of expand).
//
// A value is replaced by another only when the two have the same type, so
// broadcasting never changes a shape (x[4]·1[2,4] stays). Replacing renames
// the uses of the value, in nodes and graph outputs; the replaced node is left
// unread for dce. A composed node reads the inner node's input directly and is
// then checked against the no-op table, so a transpose of its inverse vanishes.
//
// Exactness: all rules are bit-exact in IEEE arithmetic except x+0 and 0+x when
// x = −0 (−0 + 0 = +0, the rule keeps −0); the two compare equal, and no
// training value depends on the sign of a zero sum.
func algebra(s *State) error {
	counts := map[string]int{}
	for _, g := range s.Module.Graphs {
		simplifyGraph(g, counts)
	}
	if len(counts) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, counts[k]))
		}
		s.Note("algebra: %s", strings.Join(parts, ", "))
	}
	return nil
}

// neutralRule: Op(x, c) or Op(c, x) equals x when the operand at position
// Const is a Const holding Value; Keep is the position of x.
type neutralRule struct {
	Name  string
	Op    string
	Const int
	Value float64
	Keep  int
}

var neutralRules = []neutralRule{
	{"x·1", "Mul", 1, 1, 0},
	{"1·x", "Mul", 0, 1, 1},
	{"x+0", "Add", 1, 0, 0},
	{"0+x", "Add", 0, 0, 1},
	{"x−0", "Sub", 1, 0, 0},
	{"x/1", "Div", 1, 1, 0},
	{"x^1", "Pow", 1, 1, 0},
}

// noopRule: a one-input op whose output equals its input when When holds for
// the node (given its input's type).
type noopRule struct {
	Name string
	Op   string
	When func(n *ir.Node, in ir.Type) bool
}

var noopRules = []noopRule{
	{"identity", "Identity", always},
	{"cast to the same dtype", "Cast", sameType},
	{"reshape to the same shape", "Reshape", sameType},
	{"expand to the same shape", "Expand", sameType},
	{"identity transpose", "Transpose", identityPerm},
}

// composeRule: Outer(Inner(x)) = Outer'(x), where Compose returns the
// attributes of Outer' from those of the inner and outer nodes and the type of x.
type composeRule struct {
	Name    string
	Outer   string
	Inner   string
	Compose func(inner, outer *ir.Node, x ir.Type) ir.Attrs
}

var composeRules = []composeRule{
	{"transpose of transpose", "Transpose", "Transpose", composePerms},
	{"reshape of reshape", "Reshape", "Reshape", reshapeTo},
	{"expand of expand", "Expand", "Expand", reshapeTo},
}

func always(*ir.Node, ir.Type) bool { return true }

func sameType(n *ir.Node, in ir.Type) bool { return n.Outputs[0].Type.Equal(in) }

func identityPerm(n *ir.Node, _ ir.Type) bool {
	for i, p := range n.Attrs.GetInts("perm") {
		if p != int64(i) {
			return false
		}
	}
	return true
}

// composePerms: Transpose(Transpose(x, p1), p2) = Transpose(x, p) with
// p[k] = p1[p2[k]], because y2.shape[k] = y1.shape[p2[k]] = x.shape[p1[p2[k]]].
func composePerms(inner, outer *ir.Node, _ ir.Type) ir.Attrs {
	p1, p2 := inner.Attrs.GetInts("perm"), outer.Attrs.GetInts("perm")
	p := make([]int64, len(p2))
	for k, q := range p2 {
		p[k] = p1[q]
	}
	return ir.Attrs{"perm": ir.Ints(p...)}
}

// reshapeTo keeps the outer node's result shape (resolved, so a -1 of the
// outer node stays correct): a reshape of a reshape is one reshape, an
// expand of an expand one expand.
func reshapeTo(_, outer *ir.Node, _ ir.Type) ir.Attrs {
	return ir.Attrs{"shape": ir.IntsOf(outer.Outputs[0].Type.Shape)}
}

// simplifyGraph applies the rules to g in one walk over its nodes, counting
// applications by rule name.
func simplifyGraph(g *ir.Graph, counts map[string]int) {
	types := g.Types()
	producer := g.Producers()
	rename := map[string]string{}
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			n.Inputs[i] = resolve(rename, in)
		}
		if len(n.Outputs) != 1 {
			continue
		}
		out := n.Outputs[0]
		// Compose first: the inner node has been simplified already, so chains
		// collapse from the top down.
		if len(n.Inputs) == 1 {
			if p := producer[n.Inputs[0]]; p != nil && len(p.Inputs) == 1 {
				for _, r := range composeRules {
					if r.Outer != n.Op || r.Inner != p.Op {
						continue
					}
					x := p.Inputs[0]
					attrs := r.Compose(p, n, types[x])
					if t, err := ir.InferTypes(n.Op, []ir.Type{types[x]}, attrs); err == nil && t[0].Equal(out.Type) {
						n.Inputs, n.Attrs = []string{x}, attrs
						counts[r.Name]++
					}
					break
				}
			}
		}
		if keep, name, ok := replacement(n, types, producer); ok {
			rename[out.Name] = keep
			counts[name]++
		}
	}
	renameOutputs(g, rename)
}

// replacement returns the value n's output equals, and the rule that says so.
func replacement(n *ir.Node, types map[string]ir.Type, producer map[string]*ir.Node) (string, string, bool) {
	out := n.Outputs[0].Type
	if len(n.Inputs) == 1 {
		for _, r := range noopRules {
			if r.Op == n.Op && r.When(n, types[n.Inputs[0]]) && types[n.Inputs[0]].Equal(out) {
				return n.Inputs[0], r.Name, true
			}
		}
		return "", "", false
	}
	for _, r := range neutralRules {
		if r.Op != n.Op || len(n.Inputs) != 2 {
			continue
		}
		c, x := producer[n.Inputs[r.Const]], n.Inputs[r.Keep]
		if c == nil || c.Op != "Const" || c.Attrs.GetFloat("value", 0) != r.Value || !types[x].Equal(out) {
			continue
		}
		return x, r.Name, true
	}
	return "", "", false
}
