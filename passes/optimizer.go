package passes

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// clipEps is the 1e-6 that torch.nn.utils.clip_grad_norm_ adds to the norm.
const clipEps = 1e-6

// Optimizers are the update rules the optimizer pass builds, by their
// canonical (lower-case) names: the seed's build_optimizer choices.
var Optimizers = []string{"adam", "adamw", "sgd", "adafactor", "adam8bit"}

// PerLayerSuffix marks an optimizer whose updates are fused into the
// backward, one per parameter (the seed's adam8bit_per_layer): see perLayer.
const PerLayerSuffix = "_per_layer"

// ParseOptimizer reads an optimizer name in the seed's spellings
// (case-insensitive: Adam, AdamW, SGD, Adafactor, adam8bit, and any of them
// with the suffix _per_layer) and returns its canonical name, or an error
// that says which names exist.
func ParseOptimizer(s string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(s))
	base := strings.TrimSuffix(n, PerLayerSuffix)
	for _, o := range Optimizers {
		if base == o {
			return n, nil
		}
	}
	return "", fmt.Errorf("%q is not %s (each also as <name>%s)", s, strings.Join(Optimizers, ", "), PerLayerSuffix)
}

// SplitPerLayer splits a canonical optimizer name into its update rule and
// whether its updates are fused into the backward (the _per_layer suffix).
func SplitPerLayer(name string) (base string, perLayer bool) {
	return strings.TrimSuffix(name, PerLayerSuffix), strings.HasSuffix(name, PerLayerSuffix)
}

// optimizer is the "optimizer" pass: it builds the "update" graph, one step
// of Options.Optimizer over the gradients accumulated by train_step, after
// torch.nn.utils.clip_grad_norm_:
//
//	grad_norm = √Σ_P ‖g_P‖²                              (output "grad_norm")
//	coef      = min(1, max_grad_norm / (grad_norm + 1e-6)); g = g·coef
//
// then the optimizer's rule per parameter (optimizer_adam.go,
// optimizer_sgd.go, optimizer_adafactor.go, optimizer_adam8bit.go), and the accumulators "P.grad"
// are reset to zero. Inputs, per trainable P: P, "P.grad" (GradAccum) and the
// optimizer's states "P.<state>" (OptState, zeros); then the f64 Scalars
// "lr", "step" (1-based, as a float), "weight_decay" and "max_grad_norm"
// (+Inf: no clipping). β1, β2 and ε are Consts from Options. Per-step
// scalars (1 − lr·wd, lr/bc1, √bc2) are computed in f64 and rounded once to
// the arithmetic's dtype, as PyTorch computes them in Python floats: β2
// rounded to f32 would put a 1e-5 relative error into 1 − β2^step. Tensor
// arithmetic is f32 (f64 when the parameters are f64). Pure bf16 models
// (every parameter bf16) clip with torch's bf16 rounding (see bf16Clip);
// adam, adamw and sgd then round every op to bf16 as torch's foreach
// kernels do, with bf16 states; adafactor computes in f32 with f32 states
// and rounds the parameter once, as HF's Adafactor does for bf16 tensors.
func optimizer(s *State) error {
	m := s.Module
	ts := m.Graph("train_step")
	if ts == nil {
		s.Note("optimizer: no train_step graph: no update graph")
		return nil
	}
	if m.Graph("update") != nil {
		return fmt.Errorf("the module already has an \"update\" graph")
	}
	o := s.Options
	name := o.Optimizer
	if name == "" {
		name = "adamw"
	}
	name, err := ParseOptimizer(name)
	if err != nil {
		return &OptionError{Option: "optimizer", Msg: err.Error()}
	}
	name, perLayer := SplitPerLayer(name)
	rule := optimizerRules[name]
	if err := rule.check(o); err != nil {
		return err
	}

	var params []*ir.Input
	ct := ir.F32
	for _, acc := range ts.InputsWithRole(ir.GradAccum) {
		p := ts.Input(acc.Of)
		if p == nil {
			return fmt.Errorf("train_step: accumulator %q belongs to no input", acc.Name)
		}
		params = append(params, p)
		if p.Type.DType == ir.F64 {
			ct = ir.F64
		}
	}

	b := ir.NewBuilder("update")
	u := &updateBuilder{b: b, o: o, ct: ct, bf16: allBF16(params), noClip: perLayer}
	pv := make([]string, len(params))
	gv := make([]string, len(params))
	for i, p := range params {
		pv[i] = b.AddInput(p.Name, p.Type, ir.Param, p.Init.Clone())
		gv[i] = u.state(p, ".grad", p.Type, ir.GradAccum)
	}
	scalar := func(name string) string { return b.AddInput(name, ir.Type{DType: ir.F64}, ir.Scalar, nil) }
	u.lr, u.step, u.wd = scalar("lr"), scalar("step"), scalar("weight_decay")
	var maxNorm string
	if perLayer {
		maxNorm = scalar("grad_coef") // see noClip
	} else {
		maxNorm = scalar("max_grad_norm")
	}
	if err := b.Err(); err != nil {
		return err
	}

	var norm string
	var grads []string
	if u.bf16 {
		norm, grads = u.bf16Clip(gv, maxNorm)
	} else {
		norm, grads = u.clip(gv, maxNorm)
	}
	u.outs = []*ir.Output{{Name: "grad_norm", Value: norm}}
	for i, p := range params {
		b.Scope = p.Name
		if err := rule.step(u, p, pv[i], grads[i]); err != nil {
			return err
		}
		u.outs = append(u.outs, &ir.Output{Name: gv[i], Value: b.Const(0, p.Type), Updates: gv[i]})
	}
	b.Scope = ""
	if err := b.Err(); err != nil {
		return err
	}
	b.G.Outputs = u.outs
	orderInputs(b.G, params)
	insertGraphAfter(m, "train_step", b.G)
	if m.Meta == nil {
		m.Meta = map[string]string{}
	}
	m.Meta["optimizer"] = name
	clipping := "global-norm clipping"
	if perLayer {
		m.Meta["optimizer"] = name + PerLayerSuffix
		clipping = "no clipping (per-layer: fused into train_step by the per-layer pass)"
	}
	if name == "sgd" || name == "adafactor" {
		m.Meta["beta1"] = strconv.FormatFloat(o.Beta1, 'g', -1, 64)
	}
	prec := ct.String()
	if u.bf16 {
		prec = "bf16 parameters"
	}
	s.Note("optimizer: update runs %s (%s), %s, on %d parameters in %s", name, rule.describe(o), clipping, len(params), prec)
	return nil
}

// optimizerRule is one optimizer: its option checks, a one-line summary and
// its per-parameter step.
type optimizerRule struct {
	check    func(o Options) error
	describe func(o Options) string
	// step builds P's update from its value p and its clipped gradient g
	// (in the arithmetic dtype; in pure bf16, f32 holding a bf16 value),
	// declaring P's states and adding the outputs that update P and them.
	step func(u *updateBuilder, P *ir.Input, p, g string) error
}

var optimizerRules = map[string]optimizerRule{
	"adamw":     {check: checkAdam, describe: describeAdam("decoupled weight decay"), step: adamStep(false)},
	"adam":      {check: checkAdam, describe: describeAdam("L2 weight decay added to the gradient"), step: adamStep(true)},
	"sgd":       {check: checkSGD, describe: describeSGD, step: sgdStep},
	"adafactor": {check: checkAdafactor, describe: describeAdafactor, step: adafactorStep},
	"adam8bit":  {check: checkAdam, describe: describeAdam8bit, step: adam8bitStep},
}

// updateBuilder is the update graph being built, with the helpers every
// optimizer's step shares.
type updateBuilder struct {
	b    *ir.Builder
	o    Options
	ct   ir.DType // arithmetic dtype: f32, or f64 for f64 parameters
	bf16 bool     // pure bf16 parameters
	// noClip computes no clipping coefficient (per-layer updates run before
	// the global norm is known; the norm is still reported): the gradients
	// are multiplied by the runtime Scalar "grad_coef" instead, which the
	// trainer sets to 1. The product is exact, and it keeps each update's
	// expressions — and so the kernels' fma contractions — those of the
	// whole-model update without clipping (coef 1), bit for bit.
	noClip bool
	// lr, step, wd are the f64 Scalars.
	lr, step, wd string
	outs         []*ir.Output
}

// c is a rank-0 Const in the arithmetic dtype; c64 one in f64.
func (u *updateBuilder) c(v float64) string   { return u.b.Const(v, ir.Type{DType: u.ct}) }
func (u *updateBuilder) c64(v float64) string { return u.b.Const(v, ir.Type{DType: ir.F64}) }

// cast converts v to dt (nothing when it is dt already).
func (u *updateBuilder) cast(v string, dt ir.DType) string {
	if u.b.Type(v).DType == dt {
		return v
	}
	return u.b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, v)
}

// toCT converts v to the arithmetic dtype.
func (u *updateBuilder) toCT(v string) string { return u.cast(v, u.ct) }

// F widens to f32, R rounds to bf16: torch's per-op bf16 arithmetic.
func (u *updateBuilder) F(v string) string { return u.cast(v, ir.F32) }
func (u *updateBuilder) R(v string) string {
	return u.b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, v)
}

// state declares P's state input "P<suffix>" of type t and role (zeros).
func (u *updateBuilder) state(P *ir.Input, suffix string, t ir.Type, role ir.Role) string {
	v := u.b.AddInput(P.Name+suffix, t, role, &ir.Init{Kind: ir.InitZeros})
	if v != "" {
		u.b.G.Input(v).Of = P.Name
	}
	return v
}

// optState declares an optimizer state of P.
func (u *updateBuilder) optState(P *ir.Input, suffix string, t ir.Type) string {
	return u.state(P, suffix, t, ir.OptState)
}

// set adds the output that replaces state (or parameter) name by v, cast to
// name's dtype.
func (u *updateBuilder) set(name, v string) {
	u.outs = append(u.outs, &ir.Output{Name: name, Value: u.cast(v, u.b.Type(name).DType), Updates: name})
}

// clip is clip_grad_norm_ in the arithmetic dtype: the global norm and each
// gradient times coef = min(1, max/(norm + 1e-6)).
func (u *updateBuilder) clip(grads []string, maxNorm string) (string, []string) {
	b := u.b
	out := make([]string, len(grads))
	var sumsq string
	for i, g := range grads {
		out[i] = u.toCT(g)
		sq := sumSquares(b, out[i])
		if sumsq == "" {
			sumsq = sq
		} else {
			sumsq = b.Add(sumsq, sq)
		}
	}
	if sumsq == "" {
		sumsq = u.c(0)
	}
	norm := b.Unary("Sqrt", sumsq)
	if u.noClip {
		coef := u.toCT(maxNorm) // grad_coef
		for i := range out {
			out[i] = b.Mul(out[i], coef)
		}
		return norm, out
	}
	coef := b.Op("Min", nil, u.c(1), b.Div(u.toCT(maxNorm), b.Add(norm, u.c(clipEps))))
	for i := range out {
		out[i] = b.Mul(out[i], coef)
	}
	return norm, out
}

// bf16Clip is clip_grad_norm_ on bf16 gradients as the seed's GPU computes
// it (tools/torchref's clip_grad_norm_bf16), each op in f32 on widened
// values, rounded once to bf16 (R):
//
//	n_P  = R(√Σ g_P²)                    per-tensor vector_norm
//	norm = R(√Σ_P n_P²)                  vector_norm of the stacked norms ("grad_norm")
//	coef = min(1, R(R(1/R(norm + 1e-6))·max))   max / t is t.reciprocal()·max
//	g = R(g·coef)
//
// The clipped gradients are returned widened to f32.
func (u *updateBuilder) bf16Clip(grads []string, maxNorm string) (string, []string) {
	b, F, R := u.b, u.F, u.R
	c := func(v float64) string { return b.Const(v, ir.Type{DType: ir.F32}) }
	var sumsq string
	for _, g := range grads {
		n := F(R(b.Unary("Sqrt", sumSquares(b, F(g)))))
		sq := b.Mul(n, n)
		if sumsq == "" {
			sumsq = sq
		} else {
			sumsq = b.Add(sumsq, sq)
		}
	}
	if sumsq == "" {
		sumsq = c(0)
	}
	norm := R(b.Unary("Sqrt", sumsq))
	out := make([]string, len(grads))
	if u.noClip {
		coef := F(maxNorm) // grad_coef
		for i, g := range grads {
			out[i] = F(R(b.Mul(F(g), coef)))
		}
		return norm, out
	}
	recip := F(R(b.Div(c(1), F(R(b.Add(F(norm), c(clipEps)))))))
	coef := b.Op("Min", nil, c(1), F(R(b.Mul(recip, F(maxNorm)))))
	for i, g := range grads {
		out[i] = F(R(b.Mul(F(g), coef)))
	}
	return norm, out
}

// orderInputs sorts the update's inputs by parameter (each parameter, its
// accumulator, then its states in declaration order) with the Scalars last,
// so that state lists and checkpoints read parameter by parameter.
func orderInputs(g *ir.Graph, params []*ir.Input) {
	rank := map[string]int{}
	for i, p := range params {
		rank[p.Name] = i
	}
	key := func(in *ir.Input) int {
		if in.Role == ir.Scalar {
			return len(params)
		}
		if in.Of != "" {
			return rank[in.Of]
		}
		return rank[in.Name]
	}
	slices.SortStableFunc(g.Inputs, func(a, b *ir.Input) int { return key(a) - key(b) })
}

// sumSquares returns Σ v² as a rank-0 value.
func sumSquares(b *ir.Builder, v string) string {
	sq := b.Mul(v, v)
	if r := b.Type(sq).Rank(); r > 0 {
		sq = b.Reduce("ReduceSum", sq, false, allAxes(r)...)
	}
	return sq
}

// isFinite reports whether f is neither NaN nor infinite.
func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// allBF16 reports whether every parameter is bf16: the seed's pure-bf16
// training (model.to(torch.bfloat16)), whose update has its own rounding.
func allBF16(params []*ir.Input) bool {
	for _, p := range params {
		if p.Type.DType != ir.BF16 {
			return false
		}
	}
	return len(params) > 0
}
