package passes

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// sltrainFuse rewrites every targeted Linear y = x·Wᵀ into
// LowRankSparseAdd(x, B, A, values, index) with W = B·(A·scale) + S, exactly as the
// seed's SpLoRaLinear: B [out, r] zeros, A [r, in] ~ U(±1/√in), values [nnz] ~
// U(±1/√in), index [nnz] = a sorted seeded random support of [0, out·in)
// (i32 where out·in fits, see SparseIndexDType; the seed's is int64),
// nnz = ⌊sp_ratio·in·out⌋, scale = lora_alpha/r. The dense weight leaves the
// program: no dense parameter (and so no dense gradient or optimizer state) remains.
func sltrainFuse(s *State) error {
	o := s.Options
	switch o.PEFT {
	case "full", "":
		return nil
	case "sltrain":
	default:
		return fmt.Errorf("unknown peft mode %q (want sltrain or full)", o.PEFT)
	}
	if o.SpRatio < 0 || o.SpRatio >= 1 || math.IsNaN(o.SpRatio) {
		return fmt.Errorf("sp_ratio must be in [0, 1), got %v", o.SpRatio)
	}
	if o.LoraAlpha <= 0 || math.IsNaN(o.LoraAlpha) || math.IsInf(o.LoraAlpha, 0) {
		return fmt.Errorf("lora_alpha must be > 0, got %v", o.LoraAlpha)
	}
	targets := o.TargetModules
	if len(targets) == 0 {
		targets = DefaultTargetModules
	}
	fused := 0
	for _, g := range s.Module.Graphs {
		n, err := fuseGraph(g, o, targets)
		if err != nil {
			return err
		}
		fused += n
	}
	if s.Module.Meta == nil {
		s.Module.Meta = map[string]string{}
	}
	s.Module.Meta["peft"] = "sltrain"
	s.Module.Meta["rank"] = strconv.Itoa(o.Rank)
	s.Module.Meta["lora_alpha"] = strconv.FormatFloat(o.LoraAlpha, 'g', -1, 64)
	s.Module.Meta["sp_ratio"] = strconv.FormatFloat(o.SpRatio, 'g', -1, 64)
	s.Module.Meta["target_modules"] = strings.Join(targets, ",")
	if o.TrainScaling {
		s.Module.Meta["trainable_scaling"] = "true"
	}
	if o.TrainScaling {
		s.Note("sltrain-fuse: %d Linear layers → LowRankSparseAdd (r=%d, δ=%g, scale=tanh(<module>.scaling), trained)", fused, o.Rank, o.SpRatio)
	} else {
		s.Note("sltrain-fuse: %d Linear layers → LowRankSparseAdd (r=%d, δ=%g, scale=%g)", fused, o.Rank, o.SpRatio, o.LoraAlpha/float64(o.Rank))
	}
	return nil
}

// IsTarget reports whether a Linear of that module name is fused: its name
// contains one of the target substrings (the seed's rule).
func IsTarget(module string, targets []string) bool {
	for _, t := range targets {
		if t != "" && strings.Contains(module, t) {
			return true
		}
	}
	return false
}

func fuseGraph(g *ir.Graph, o Options, targets []string) (int, error) {
	uses := g.Uses()
	// replaced maps each fused dense weight to the four tensors that replace it.
	replaced := map[string][]*ir.Input{}
	var scaled []*ir.Node // the fused layers whose scale is trained
	count := 0
	for _, n := range g.Nodes {
		if n.Op != "Linear" {
			continue
		}
		w := g.Input(n.Inputs[1])
		if w == nil || w.Role != ir.Param {
			continue
		}
		// The module is the weight's name without ".weight"; the node's name
		// (its module's, for configs and for imported ONNX graphs) matches too.
		module := strings.TrimSuffix(w.Name, ".weight")
		if !(IsTarget(module, targets) || IsTarget(n.Name, targets)) || uses[w.Name] != 1 {
			continue
		}
		out, in := w.Type.Shape[0], w.Type.Shape[1]
		if o.Rank < 1 || o.Rank > min(in, out) {
			return 0, &OptionError{Option: "rank", Msg: fmt.Sprintf("rank must be in [1, %d] for %s [%d, %d], got %d", min(in, out), module, out, in, o.Rank)}
		}
		nnz := int(math.Floor(o.SpRatio * float64(in) * float64(out)))
		bound := 1 / math.Sqrt(float64(in))
		dt := w.Type.DType
		b := &ir.Input{Value: ir.Value{Name: module + ".lora_B", Type: ir.T(dt, out, o.Rank)}, Role: ir.Param,
			Init: &ir.Init{Kind: ir.InitZeros}}
		a := &ir.Input{Value: ir.Value{Name: module + ".lora_A", Type: ir.T(dt, o.Rank, in)}, Role: ir.Param,
			Init: &ir.Init{Kind: ir.InitUniform, Low: -bound, High: bound, Seed: ir.SeedFor(o.Seed, module+".lora_A")}}
		v := &ir.Input{Value: ir.Value{Name: module + ".sparse_value", Type: ir.Type{DType: dt, Shape: []int{nnz}}}, Role: ir.Param,
			Init: &ir.Init{Kind: ir.InitUniform, Low: -bound, High: bound, Seed: ir.SeedFor(o.Seed, module+".sparse_value")}}
		total := int64(out) * int64(in)
		idx := &ir.Input{Value: ir.Value{Name: module + ".sparse_index", Type: ir.Type{DType: SparseIndexDType(total), Shape: []int{nnz}}}, Role: ir.Buffer,
			Init: &ir.Init{Kind: ir.InitSupport, Total: total, Seed: ir.SeedFor(o.Seed, module+".sparse_index")}}
		for _, p := range []*ir.Input{b, a, v, idx} {
			if g.Input(p.Name) != nil {
				return 0, fmt.Errorf("%s: input %q already exists", module, p.Name)
			}
		}
		replaced[w.Name] = []*ir.Input{b, a, v, idx}
		n.Op = "LowRankSparseAdd"
		n.Inputs = []string{n.Inputs[0], b.Name, a.Name, v.Name, idx.Name}
		n.Attrs = ir.Attrs{"scale": ir.Float(o.LoraAlpha / float64(o.Rank))}
		if o.TrainScaling {
			sc, err := scalingInput(g, module, dt)
			if err != nil {
				return 0, err
			}
			replaced[w.Name] = append(replaced[w.Name], sc)
			scaled = append(scaled, n)
		}
		count++
	}
	// Keep the state-dict order: the factored tensors take the dense weight's place.
	var inputs []*ir.Input
	for _, in := range g.Inputs {
		if r, ok := replaced[in.Name]; ok {
			inputs = append(inputs, r...)
		} else {
			inputs = append(inputs, in)
		}
	}
	g.Inputs = inputs
	if len(scaled) > 0 {
		if err := trainScaling(g, scaled); err != nil {
			return 0, err
		}
	}
	return count, nil
}
