// Package summary describes an ir.Module for people: how many parameters it has
// and where they sit (embeddings, attention, MLP, …; dense, low-rank, sparse),
// its data inputs and outputs, the shapes of one transformer layer, and the size
// of each graph. The numbers are the ones the seed's training log prints
// ("Total params: 58.07M"), so a compiled model can be checked against it.
package summary

import (
	"sort"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// Parameter groups, by what the parameter's name says it belongs to.
const (
	GroupEmbeddings = "embeddings" // names containing "embed_tokens"
	GroupAttention  = "attention"  // "self_attn", "attention" or "attn"
	GroupMLP        = "MLP"        // "mlp"
	GroupNorms      = "norms"      // "norm" or "layernorm"
	GroupLMHead     = "lm_head"    // "lm_head"
	GroupOther      = "other"      // anything else
)

// Parameter kinds: SLTrain splits a dense weight into a low-rank pair and a
// sparse part.
const (
	KindDense   = "dense"
	KindLowRank = "low-rank" // names ending in lora_A or lora_B
	KindSparse  = "sparse"   // names containing sparse_value
)

// Groups and Kinds list the group and kind names in the order they are printed.
var (
	Groups = []string{GroupEmbeddings, GroupAttention, GroupMLP, GroupNorms, GroupLMHead, GroupOther}
	Kinds  = []string{KindDense, KindLowRank, KindSparse}
)

// Count is a number of tensors and of their elements under one name (a group,
// a kind or a role).
type Count struct {
	Name    string
	Tensors int
	Elems   int64
}

// Tensor is one graph input or output: its name, type and role (Role is
// ir.InvalidRole for outputs).
type Tensor struct {
	Name string
	Type ir.Type
	Role ir.Role
}

// OpCount is how many nodes of a graph apply one op.
type OpCount struct {
	Op    string
	Nodes int
}

// GraphInfo is the size of one graph and its op histogram, most used op first.
type GraphInfo struct {
	Name  string
	Nodes int
	Ops   []OpCount
}

// Summary is what Of finds in a module. Parameters, buffers and inputs are
// those of one graph (Graph): the one named "forward" when the module has it,
// else the first.
type Summary struct {
	Meta         map[string]string
	Graph        string  // the graph whose inputs are counted ("" when there are no graphs)
	Params       Count   // all ir.Param inputs
	Groups       []Count // per group, in the order of Groups; empty groups included
	Kinds        []Count // per kind, in the order of Kinds; empty kinds included
	Buffers      []Tensor
	BufferElems  int64
	State        []Count  // optimizer state and gradient accumulators, when present
	Inputs       []Tensor // data and scalar inputs, in graph order
	Outputs      []Tensor // outputs that update no state, in graph order
	StateUpdates int      // outputs that update a state input (gradient accumulators, …)
	Layers       int      // distinct N in "model.layers.N."
	LayerState   []Tensor // params and buffers of the lowest-numbered layer, renamed model.layers.*.…
	LayerParams  int64    // parameter elements of that layer
	GlobalState  []Tensor // params and buffers outside the layers
	GraphDetails []GraphInfo
}

// layerPrefix starts the names of per-layer tensors (HF LLaMA naming).
const layerPrefix = "model.layers."

// Of summarises m. It never fails: a module without graphs gives an empty
// Summary.
func Of(m *ir.Module) *Summary {
	s := &Summary{Meta: m.Meta}
	for _, g := range m.Graphs {
		s.GraphDetails = append(s.GraphDetails, graphInfo(g))
	}
	g := m.Graph("forward")
	if g == nil && len(m.Graphs) > 0 {
		g = m.Graphs[0]
	}
	groups := map[string]*Count{}
	for _, name := range Groups {
		groups[name] = &Count{Name: name}
	}
	kinds := map[string]*Count{}
	for _, name := range Kinds {
		kinds[name] = &Count{Name: name}
	}
	if g != nil {
		s.Graph = g.Name
		s.Params.Name = "params"
		state := map[ir.Role]*Count{}
		layers := map[int]bool{}
		first := -1
		for _, in := range g.Inputs {
			n := in.Type.NumElements()
			switch in.Role {
			case ir.Param:
				s.Params.Tensors++
				s.Params.Elems += n
				add(groups[GroupOf(in.Name)], n)
				add(kinds[KindOf(in.Name)], n)
			case ir.Buffer:
				s.Buffers = append(s.Buffers, Tensor{in.Name, in.Type, in.Role})
				s.BufferElems += n
			case ir.OptState, ir.GradAccum:
				if state[in.Role] == nil {
					state[in.Role] = &Count{Name: in.Role.String()}
				}
				add(state[in.Role], n)
			case ir.Data, ir.Scalar:
				s.Inputs = append(s.Inputs, Tensor{in.Name, in.Type, in.Role})
			}
			if in.Role == ir.Param || in.Role == ir.Buffer {
				if l, ok := layerIndex(in.Name); ok {
					layers[l] = true
					if first < 0 || l < first {
						first = l
					}
				}
			}
		}
		for _, r := range []ir.Role{ir.OptState, ir.GradAccum} {
			if c := state[r]; c != nil {
				s.State = append(s.State, *c)
			}
		}
		s.Layers = len(layers)
		for _, in := range g.Inputs {
			if in.Role != ir.Param && in.Role != ir.Buffer {
				continue
			}
			l, ok := layerIndex(in.Name)
			switch {
			case !ok:
				s.GlobalState = append(s.GlobalState, Tensor{in.Name, in.Type, in.Role})
			case l == first:
				rest := in.Name[len(layerPrefix)+len(strconv.Itoa(l)):]
				s.LayerState = append(s.LayerState, Tensor{layerPrefix + "*" + rest, in.Type, in.Role})
				if in.Role == ir.Param {
					s.LayerParams += in.Type.NumElements()
				}
			}
		}
		types := g.Types()
		for _, o := range g.Outputs {
			if o.Updates != "" {
				s.StateUpdates++
				continue
			}
			s.Outputs = append(s.Outputs, Tensor{Name: o.Name, Type: types[o.Value]})
		}
	}
	for _, name := range Groups {
		s.Groups = append(s.Groups, *groups[name])
	}
	for _, name := range Kinds {
		s.Kinds = append(s.Kinds, *kinds[name])
	}
	return s
}

func add(c *Count, n int64) {
	c.Tensors++
	c.Elems += n
}

// GroupOf says which group a parameter belongs to, from its name. Norms are
// tested before attention so that post_attention_layernorm counts as a norm.
func GroupOf(name string) string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(name, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("embed_tokens"):
		return GroupEmbeddings
	case has("lm_head"):
		return GroupLMHead
	case has("norm"): // also "layernorm"
		return GroupNorms
	case has("self_attn", "attention", "attn"):
		return GroupAttention
	case has("mlp"):
		return GroupMLP
	}
	return GroupOther
}

// KindOf says whether a parameter is dense, one factor of a low-rank pair, or
// the values of a sparse matrix, from its name. A trailing ".weight" is ignored,
// so "q_proj.lora_A" and "q_proj.lora_A.weight" are both low-rank.
func KindOf(name string) string {
	base := strings.TrimSuffix(name, ".weight")
	switch {
	case strings.HasSuffix(base, "lora_A"), strings.HasSuffix(base, "lora_B"):
		return KindLowRank
	case strings.Contains(name, "sparse_value"):
		return KindSparse
	}
	return KindDense
}

// layerIndex returns N for a name starting with "model.layers.N.".
func layerIndex(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, layerPrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, ".")
	if !ok || digits == "" {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(digits)
	if err != nil || strconv.Itoa(n) != digits { // reject "007": it would not round-trip
		return 0, false
	}
	return n, true
}

func graphInfo(g *ir.Graph) GraphInfo {
	counts := map[string]int{}
	for _, n := range g.Nodes {
		counts[n.Op]++
	}
	gi := GraphInfo{Name: g.Name, Nodes: len(g.Nodes)}
	for op, n := range counts {
		gi.Ops = append(gi.Ops, OpCount{op, n})
	}
	sort.Slice(gi.Ops, func(i, j int) bool {
		a, b := gi.Ops[i], gi.Ops[j]
		if a.Nodes != b.Nodes {
			return a.Nodes > b.Nodes
		}
		return a.Op < b.Op
	})
	return gi
}
