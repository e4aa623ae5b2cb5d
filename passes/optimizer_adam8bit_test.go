package passes

import (
	"math"
	"math/rand/v2"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// refDynamicCode builds the dynamic tree code from its bit layout, as the
// paper describes it: a sign (signed code only), a run of zeros giving the
// decimal exponent, an indicator bit, and the remaining bits a linear
// fraction in [0.1, 1]; plus 0 and 1. Independent of ir.DynamicCode.
func refDynamicCode(signed bool) []float64 {
	bits := 7 // after the sign bit (the unsigned code spends it on the fraction)
	var out []float64
	for zeros := 0; zeros < 7; zeros++ {
		fracBits := bits - 1 - zeros // after the zeros and the indicator
		if !signed {
			fracBits++
		}
		n := 1 << fracBits
		for k := 0; k < n; k++ {
			v := math.Pow(10, -float64(zeros)) * (0.1 + 0.9*(2*float64(k)+1)/(2*float64(n)))
			v = float64(float32(v))
			out = append(out, v)
			if signed {
				out = append(out, -v)
			}
		}
	}
	out = append(out, 0, 1)
	for i := range out { // insertion sort: small, and unlike ir's
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// refNearest is the index of the code value nearest to x by exhaustive
// search (the lower on a tie).
func refNearest(code []float64, x float64) int {
	best := 0
	for i, c := range code {
		if math.Abs(x-c) < math.Abs(x-code[best]) {
			best = i
		}
	}
	return best
}

func TestDynamicCode(t *testing.T) {
	for _, signed := range []bool{true, false} {
		ref := refDynamicCode(signed)
		got := ir.DynamicCode(signed)
		if len(ref) != 256 {
			t.Fatalf("reference code has %d values", len(ref))
		}
		for i := range ref {
			if got[i] != ref[i] {
				t.Fatalf("signed %v: code[%d] = %v, reference %v", signed, i, got[i], ref[i])
			}
		}
		r := rand.New(rand.NewPCG(3, 4))
		for i := 0; i < 20000; i++ {
			x := math.Pow(10, -8*r.Float64()) * float64(1-2*r.IntN(2))
			if !signed {
				x = math.Abs(x)
			}
			if i < 256 {
				x = ref[i] // every code value maps to itself
			}
			if q, w := ir.QuantizeDynamic(x, signed), refNearest(ref, x); q != w {
				t.Fatalf("signed %v: QuantizeDynamic(%v) = %d, nearest is %d", signed, x, q, w)
			}
		}
	}
	// Facts of the published code: the signed code's smallest positive
	// value is 10⁻⁶·0.55, its largest below 1 is 0.1 + 0.9·63.5/64.
	s := ir.DynamicCode(true)
	if s[128] != float64(float32(5.5e-7)) || s[254] != float64(float32(0.99296875)) || s[127] != 0 || s[255] != 1 {
		t.Errorf("signed code: [127] %v, [128] %v, [254] %v, [255] %v", s[127], s[128], s[254], s[255])
	}
}

// adam8bitRef is bitsandbytes' Adam8bit step in float64, written from the
// paper (block-wise quantization with per-block absmax, dynamic code) and
// the library's update rule, over a flat tensor: 8-bit when n ≥ minSize.
type adam8bitRef struct {
	p, m, v    []float64 // m, v: the dequantized states (8-bit) or the states (32-bit)
	q1, q2     []int     // codes (8-bit)
	a1, a2     []float64 // absmax per block
	eightBit   bool
	codeS, cU  []float64
	beta1, b2  float64
	eps        float64
	blockElems int
}

func newAdam8bitRef(p []float64, minSize int) *adam8bitRef {
	n := len(p)
	r := &adam8bitRef{p: append([]float64(nil), p...), m: make([]float64, n), v: make([]float64, n), eightBit: n >= minSize,
		codeS: refDynamicCode(true), cU: refDynamicCode(false), beta1: 0.9, b2: 0.999, eps: 1e-8, blockElems: 2048}
	if r.eightBit {
		nb := (n + 2047) / 2048
		r.q1, r.q2 = make([]int, nb*2048), make([]int, nb*2048)
		for i := range r.q1 {
			r.q1[i] = refNearest(r.codeS, 0)
		}
		r.a1, r.a2 = make([]float64, nb), make([]float64, nb)
	}
	return r
}

func (r *adam8bitRef) step(g []float64, t int, lr, wd float64) {
	n := len(r.p)
	c2 := math.Sqrt(1 - math.Pow(r.b2, float64(t)))
	stepSize := -lr * c2 / (1 - math.Pow(r.beta1, float64(t)))
	for i := 0; i < n; i++ {
		m, v := r.m[i], r.v[i]
		if r.eightBit {
			m = r.codeS[r.q1[i]] * r.a1[i/2048]
			v = r.cU[r.q2[i]] * r.a2[i/2048]
		}
		r.m[i] = m*r.beta1 + g[i]*(1-r.beta1)
		r.v[i] = v*r.b2 + (1-r.b2)*(g[i]*g[i])
		r.p[i] = (r.p[i] + stepSize*(r.m[i]/(math.Sqrt(r.v[i])+c2*r.eps))) * (1 - lr*wd)
	}
	if !r.eightBit {
		return
	}
	for blk := range r.a1 {
		lo, hi := blk*2048, min((blk+1)*2048, n)
		var a1, a2 float64
		for i := lo; i < hi; i++ {
			a1, a2 = math.Max(a1, math.Abs(r.m[i])), math.Max(a2, math.Abs(r.v[i]))
		}
		r.a1[blk], r.a2[blk] = a1, a2
		d1, d2 := a1, a2
		if d1 == 0 {
			d1 = 1
		}
		if d2 == 0 {
			d2 = 1
		}
		for i := lo; i < hi; i++ {
			r.q1[i] = refNearest(r.codeS, r.m[i]/d1)
			r.q2[i] = refNearest(r.cU, r.v[i]/d2)
		}
	}
}

// TestAdam8bitMatchesReference: three updates (clipping, weight decay) of
// the f64 adam8bit graph through the interpreter against adam8bitRef: a
// 100×50 matrix in three 8-bit blocks (the last padded), a 40×60 one and a
// vector under 4,096 elements with 32-bit states. The 8-bit states are
// equal byte for byte, the absmax, 32-bit states and parameters to 1e-12.
func TestAdam8bitMatchesReference(t *testing.T) {
	dt := ir.F64
	bld := ir.NewBuilder("forward")
	x := bld.AddInput("x", ir.T(dt, 2, 50), ir.Data, nil)
	w := bld.AddInput("w", ir.T(dt, 100, 50), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.5, Seed: 1})
	z := bld.AddInput("z", ir.T(dt, 40, 60), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.5, Seed: 2})
	n := bld.AddInput("n", ir.T(dt, 100), ir.Param, &ir.Init{Kind: ir.InitOnes})
	y := bld.Mul(bld.Op("Linear", nil, x, w), n)
	bld.Output("loss", bld.Add(bld.Reduce("ReduceMean", bld.Mul(y, y), false, 0, 1), bld.Reduce("ReduceMean", z, false, 0, 1)))
	if err := bld.Err(); err != nil {
		t.Fatal(err)
	}
	m := &ir.Module{Graphs: []*ir.Graph{bld.G}}
	o := DefaultOptions()
	o.Optimizer = "adam8bit"
	s := &State{Module: m, Options: o, Verify: true}
	if err := Run(s, trainingPasses(t)); err != nil {
		t.Fatal(err)
	}
	up := m.Graph("update")
	if in := up.Input("w.state1"); in == nil || !in.Type.Equal(ir.T(ir.U8, 3, 2048)) {
		t.Fatalf("w.state1: %+v", in)
	}
	if in := up.Input("z.state1"); in == nil || !in.Type.Equal(ir.T(dt, 40, 60)) {
		t.Fatalf("z.state1 (under 4096 elements): %+v", in)
	}
	st, err := interp.InitState(up)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	refs := map[string]*adam8bitRef{}
	for _, name := range []string{"w", "z", "n"} {
		for i := range st[name].F {
			st[name].F[i] = r.NormFloat64()
		}
		refs[name] = newAdam8bitRef(st[name].F, 4096)
	}
	const lr, wd, maxNorm = 1e-2, 0.1, 0.5
	for step := 1; step <= 3; step++ {
		grads := map[string][]float64{}
		var ss float64
		for name := range refs {
			for range st[name].F {
				g := r.NormFloat64() * 0.3
				if name == "w" && len(grads[name]) < 2048 && step == 1 {
					g = 0 // a whole block of zeros: absmax 0
				}
				grads[name] = append(grads[name], g)
				ss += g * g
			}
			copy(st[name+".grad"].F, grads[name])
		}
		coef := math.Min(1, maxNorm/(math.Sqrt(ss)+1e-6))
		if coef >= 1 {
			t.Fatal("clipping is not exercised")
		}
		st["lr"], st["step"], st["weight_decay"], st["max_grad_norm"] = scalarT(ir.F64, lr), scalarT(ir.F64, float64(step)), scalarT(ir.F64, wd), scalarT(ir.F64, maxNorm)
		out, err := interp.Run(up, st)
		if err != nil {
			t.Fatal(err)
		}
		applyUpdates(up, st, out)
		for name, ref := range refs {
			g := grads[name]
			for i := range g {
				g[i] *= coef
			}
			ref.step(g, step, lr, wd)
			near := func(what string, got, want []float64) {
				for i := range want {
					if d := math.Abs(got[i] - want[i]); !(d <= 1e-12*math.Max(1, math.Abs(want[i]))) {
						t.Fatalf("step %d: %s[%d] = %.17g, reference %.17g", step, what, i, got[i], want[i])
					}
				}
			}
			near(name, st[name].F, ref.p)
			if !ref.eightBit {
				near(name+".state1", st[name+".state1"].F, ref.m)
				near(name+".state2", st[name+".state2"].F, ref.v)
				continue
			}
			near(name+".absmax1", st[name+".absmax1"].F, ref.a1)
			near(name+".absmax2", st[name+".absmax2"].F, ref.a2)
			for k, q := range map[string][]int{".state1": ref.q1, ".state2": ref.q2} {
				for i, v := range st[name+k].I {
					want := q[i]
					if i >= len(ref.p) {
						want = map[string]int{".state1": 127, ".state2": 0}[k] // the padded tail holds code 0.0
					}
					if int(v) != want {
						t.Fatalf("step %d: %s%s[%d] = %d, reference %d", step, name, k, i, v, want)
					}
				}
			}
		}
	}
}
