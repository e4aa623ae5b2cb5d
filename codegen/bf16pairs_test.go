package codegen

import (
	"math"
	"math/rand/v2"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/target"
)

// TestBF16PairsSpecialValues runs bf16 element-wise chains that the CPU
// lowers on pairs of bf16 (codegen/lower's bf16pairs.go) over every bf16
// bit pattern — ±0, subnormals, normals, ±Inf, NaNs — and checks each
// result bit for bit against the chain computed in Go: each node in
// float32, rounded to bf16 (ir.BF16FromFloat32) as the node's result. A NaN
// must come out as a NaN (its payload is the hardware's). The space is not
// a multiple of the pair width, so threads' remainders take the scalar
// chain; 1, 2 and 3 threads; the AVX-512 host and an AVX2 target.
func TestBF16PairsSpecialValues(t *testing.T) {
	const n = 65536 + 37
	r := rand.New(rand.NewPCG(5, 6))
	xs, zs := make([]uint16, n), make([]uint16, n)
	perm := r.Perm(65536)
	for i := range xs {
		xs[i], zs[i] = uint16(i), uint16(perm[i%65536])
		if i >= 65536 {
			xs[i], zs[i] = uint16(r.Uint32()), uint16(r.Uint32())
		}
	}
	s := ir.BF16ToFloat32(ir.BF16FromFloat32(0.3))
	round := func(f float32) float32 { return ir.BF16ToFloat32(ir.BF16FromFloat32(f)) }
	sqrt := func(f float32) float32 { return float32(math.Sqrt(float64(f))) }
	type chain struct {
		name  string
		build func(b *ir.Builder, x, z, sc string) string
		want  func(x, z float32) float32
	}
	chains := []chain{
		{"add", func(b *ir.Builder, x, z, _ string) string { return b.Op("Add", nil, x, z) }, func(x, z float32) float32 { return x + z }},
		{"sub", func(b *ir.Builder, x, z, _ string) string { return b.Op("Sub", nil, x, z) }, func(x, z float32) float32 { return x - z }},
		{"mul", func(b *ir.Builder, x, z, _ string) string { return b.Op("Mul", nil, x, z) }, func(x, z float32) float32 { return x * z }},
		{"div", func(b *ir.Builder, x, z, _ string) string { return b.Op("Div", nil, x, z) }, func(x, z float32) float32 { return x / z }},
		{"sqrt", func(b *ir.Builder, x, _, _ string) string { return b.Unary("Sqrt", x) }, func(x, _ float32) float32 { return sqrt(x) }},
		{"scale", func(b *ir.Builder, x, _, sc string) string { return b.Op("Mul", nil, x, sc) }, func(x, _ float32) float32 { return x * s }},
		{"muladd", func(b *ir.Builder, x, z, _ string) string { return b.Op("Add", nil, b.Op("Mul", nil, x, z), x) },
			func(x, z float32) float32 { return round(x*z) + x }},
		{"widen", func(b *ir.Builder, x, z, _ string) string {
			// bf16 → f32 → (f32 math) → bf16: one rounding at the end
			// (a quotient: a product and a sum may fuse into an FMA).
			cast := func(v, to string) string { return b.Op("Cast", ir.Attrs{"to": ir.String(to)}, v) }
			q := b.Op("Div", nil, cast(x, "f32"), cast(z, "f32"))
			return cast(b.Op("Add", nil, q, cast(x, "f32")), "bf16")
		}, func(x, z float32) float32 { return x/z + x }},
	}
	mod := &ir.Module{}
	for _, c := range chains {
		b := ir.NewBuilder(c.name)
		x := b.AddInput("x", ir.T(ir.BF16, n), ir.Data, nil)
		z := b.AddInput("z", ir.T(ir.BF16, n), ir.Data, nil)
		sc := b.AddInput("s", ir.T(ir.BF16), ir.Data, nil)
		b.Output("y", c.build(b, x, z, sc))
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		mod.Graphs = append(mod.Graphs, b.G)
	}
	tensor := func(bits []uint16) *interp.Tensor {
		v := interp.NewTensor(ir.T(ir.BF16, len(bits)))
		for i, h := range bits {
			v.F[i] = float64(ir.BF16ToFloat32(h))
		}
		return v
	}
	for _, cpu := range []string{"", "x86-64-v3"} {
		art, err := compilePlanned(mod, Options{Target: target.NewCPU(cpu, "")})
		if err != nil {
			t.Fatal(err)
		}
		m := load(t, art)
		for _, c := range chains {
			for _, nth := range []int{1, 2, 3} {
				in := map[string]*interp.Tensor{"x": tensor(xs), "z": tensor(zs), "s": interp.FromFloats(ir.T(ir.BF16), []float64{float64(s)})}
				got := m.run(t, c.name, in, nth)["y"]
				bad := 0
				for i := range n {
					x, z := ir.BF16ToFloat32(xs[i]), ir.BF16ToFloat32(zs[i])
					want := ir.BF16FromFloat32(c.want(x, z))
					g := got.F[i]
					ok := math.IsNaN(g) && math.IsNaN(float64(ir.BF16ToFloat32(want))) ||
						!math.IsNaN(g) && ir.BF16FromFloat32(float32(g)) == want
					if !ok {
						if bad < 5 {
							t.Errorf("cpu=%q %s, %d threads: element %d: x %#04x z %#04x: got %v, want %#04x (%v)", cpu, c.name, nth, i, xs[i], zs[i], g, want, ir.BF16ToFloat32(want))
						}
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("cpu=%q %s, %d threads: %d of %d elements differ", cpu, c.name, nth, bad, n)
				}
			}
		}
	}
}

// TestBF16PairsRows runs bf16 chains over a [R, C] space with a value per
// row (f32 and bf16, as RMSNorm's 1/rms) and one per column (its weight),
// which the CPU lowers on bf16 pairs row by row, against the chain in Go,
// bit for bit: every bf16 pattern among x, specials among the row and
// column values, C not a multiple of the pair width.
func TestBF16PairsRows(t *testing.T) {
	const R, C = 67, 1001
	r := rand.New(rand.NewPCG(7, 8))
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-39, -3e-40}
	xs := make([]uint16, R*C)
	for i := range xs {
		xs[i] = uint16(i)
		if i >= 65536 {
			xs[i] = uint16(r.Uint32())
		}
	}
	rowv, colv := make([]float32, R), make([]float32, C)
	for i := range rowv {
		rowv[i] = float32(r.NormFloat64())
		if i < len(specials) {
			rowv[i] = specials[i]
		}
	}
	for i := range colv {
		colv[i] = ir.BF16ToFloat32(ir.BF16FromFloat32(float32(r.NormFloat64())))
		if i%97 < len(specials) && i > 100 {
			colv[i] = ir.BF16ToFloat32(ir.BF16FromFloat32(specials[i%97]))
		}
	}
	bf := func(f float32) float32 { return ir.BF16ToFloat32(ir.BF16FromFloat32(f)) }
	cast := func(b *ir.Builder, v, to string) string { return b.Op("Cast", ir.Attrs{"to": ir.String(to)}, v) }
	type chain struct {
		name  string
		rowDT ir.DType
		build func(b *ir.Builder, x, rv, cv string) string
		want  func(x, rv, cv float32) float32
	}
	chains := []chain{
		{"rmsnorm", ir.F32, func(b *ir.Builder, x, rv, cv string) string {
			return b.Op("Mul", nil, cast(b, b.Op("Mul", nil, cast(b, x, "f32"), rv), "bf16"), cv)
		}, func(x, rv, cv float32) float32 { return bf(x*rv) * cv }},
		{"rowscale", ir.BF16, func(b *ir.Builder, x, rv, _ string) string { return b.Op("Mul", nil, x, rv) },
			func(x, rv, _ float32) float32 { return x * bf(rv) }},
		{"coladd", ir.BF16, func(b *ir.Builder, x, _, cv string) string { return b.Op("Add", nil, x, cv) },
			func(x, _, cv float32) float32 { return x + cv }},
	}
	mod := &ir.Module{}
	for _, c := range chains {
		b := ir.NewBuilder(c.name)
		x := b.AddInput("x", ir.T(ir.BF16, R, C), ir.Data, nil)
		rv := b.AddInput("r", ir.T(c.rowDT, R, 1), ir.Data, nil)
		cv := b.AddInput("w", ir.T(ir.BF16, C), ir.Data, nil)
		b.Output("y", c.build(b, x, rv, cv))
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		mod.Graphs = append(mod.Graphs, b.G)
	}
	for _, cpu := range []string{"", "x86-64-v3"} {
		art, err := compilePlanned(mod, Options{Target: target.NewCPU(cpu, "")})
		if err != nil {
			t.Fatal(err)
		}
		m := load(t, art)
		for _, c := range chains {
			for _, nth := range []int{1, 2, 3} {
				xt := interp.NewTensor(ir.T(ir.BF16, R, C))
				for i, h := range xs {
					xt.F[i] = float64(ir.BF16ToFloat32(h))
				}
				rt, wt := interp.NewTensor(ir.T(c.rowDT, R, 1)), interp.NewTensor(ir.T(ir.BF16, C))
				for i, v := range rowv {
					rt.F[i] = float64(v)
				}
				for i, v := range colv {
					wt.F[i] = float64(v)
				}
				got := m.run(t, c.name, map[string]*interp.Tensor{"x": xt, "r": rt, "w": wt}, nth)["y"]
				bad := 0
				for i := range R * C {
					want := ir.BF16FromFloat32(c.want(ir.BF16ToFloat32(xs[i]), rowv[i/C], colv[i%C]))
					g := got.F[i]
					ok := math.IsNaN(g) && math.IsNaN(float64(ir.BF16ToFloat32(want))) ||
						!math.IsNaN(g) && ir.BF16FromFloat32(float32(g)) == want
					if !ok {
						if bad < 5 {
							t.Errorf("cpu=%q %s, %d threads: element %d: got %v, want %#04x (%v)", cpu, c.name, nth, i, g, want, ir.BF16ToFloat32(want))
						}
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("cpu=%q %s, %d threads: %d of %d elements differ", cpu, c.name, nth, bad, R*C)
				}
			}
		}
	}
}

// TestBF16PairsMatchScalar checks the bf16 pairs (codegen/lower's
// bf16pairs.go) against the scalar chain the loop vectorizer widens, on
// the ops whose f32 arithmetic Go does not reproduce (the inline exp of
// Exp, Sigmoid and Silu; libm's log and pow): each chain once on a bf16
// input (pairs) and once on the same values given in f32 and rounded to
// bf16 inside the chain (an f32 input keeps it off the pairs), over every
// bf16 pattern, bit for bit (NaN: a NaN).
func TestBF16PairsMatchScalar(t *testing.T) {
	const n = 65536 + 37
	r := rand.New(rand.NewPCG(9, 10))
	xs, zs := make([]uint16, n), make([]uint16, n)
	perm := r.Perm(65536)
	for i := range xs {
		xs[i], zs[i] = uint16(i), uint16(perm[i%65536])
		if i >= 65536 {
			xs[i], zs[i] = uint16(r.Uint32()), uint16(r.Uint32())
		}
	}
	chains := map[string]func(b *ir.Builder, x, z string) string{
		"exp":     func(b *ir.Builder, x, _ string) string { return b.Unary("Exp", x) },
		"sigmoid": func(b *ir.Builder, x, _ string) string { return b.Unary("Sigmoid", x) },
		"swiglu":  func(b *ir.Builder, x, z string) string { return b.Op("Mul", nil, b.Unary("Silu", x), z) },
		"log":     func(b *ir.Builder, x, _ string) string { return b.Unary("Log", x) },
		"rsqrt":   func(b *ir.Builder, x, _ string) string { return b.Unary("Rsqrt", x) },
		"pow":     func(b *ir.Builder, x, z string) string { return b.Op("Pow", nil, x, z) },
		"max":     func(b *ir.Builder, x, z string) string { return b.Op("Max", nil, x, z) },
	}
	mod := &ir.Module{}
	var names []string
	for name, build := range chains {
		names = append(names, name)
		for _, via := range []string{"pairs", "scalar"} {
			b := ir.NewBuilder(name + "_" + via)
			var x string
			if via == "pairs" {
				x = b.AddInput("x", ir.T(ir.BF16, n), ir.Data, nil)
			} else {
				x = b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, b.AddInput("x", ir.T(ir.F32, n), ir.Data, nil))
			}
			z := b.AddInput("z", ir.T(ir.BF16, n), ir.Data, nil)
			b.Output("y", build(b, x, z))
			if err := b.Err(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			mod.Graphs = append(mod.Graphs, b.G)
		}
	}
	tensor := func(d ir.DType, bits []uint16) *interp.Tensor {
		v := interp.NewTensor(ir.T(d, len(bits)))
		for i, h := range bits {
			v.F[i] = float64(ir.BF16ToFloat32(h))
		}
		return v
	}
	for _, cpu := range []string{"", "x86-64-v3"} {
		art, err := compilePlanned(mod, Options{Target: target.NewCPU(cpu, "")})
		if err != nil {
			t.Fatal(err)
		}
		m := load(t, art)
		for _, name := range names {
			want := m.run(t, name+"_scalar", map[string]*interp.Tensor{"x": tensor(ir.F32, xs), "z": tensor(ir.BF16, zs)}, 1)["y"]
			for _, nth := range []int{1, 3} {
				got := m.run(t, name+"_pairs", map[string]*interp.Tensor{"x": tensor(ir.BF16, xs), "z": tensor(ir.BF16, zs)}, nth)["y"]
				bad := 0
				for i := range n {
					g, w := got.F[i], want.F[i]
					if math.IsNaN(g) && math.IsNaN(w) || math.Float64bits(g) == math.Float64bits(w) {
						continue
					}
					if bad < 5 {
						t.Errorf("cpu=%q %s, %d threads: element %d: x %#04x z %#04x: pairs %v, scalar %v", cpu, name, nth, i, xs[i], zs[i], g, w)
					}
					bad++
				}
				if bad > 0 {
					t.Errorf("cpu=%q %s, %d threads: %d of %d elements differ", cpu, name, nth, bad, n)
				}
			}
		}
	}
}

// TestBF16PairsMatchScalarF32 is TestBF16PairsMatchScalar on f32
// arguments: p = x·z in f32 from two bf16 inputs (8M distinct-enough
// values, where a bf16 input has 65,536), then op(p) rounded once to bf16,
// so that an op whose f32 result differs in its last bits (libm's expf
// against the inline one) shows in the rounding often enough to be seen.
// The scalar reference is the same group with p also written as an f32
// output, which keeps it off the pairs.
func TestBF16PairsMatchScalarF32(t *testing.T) {
	const n = 1<<23 + 37
	r := rand.New(rand.NewPCG(11, 12))
	x, z := interp.NewTensor(ir.T(ir.BF16, n)), interp.NewTensor(ir.T(ir.BF16, n))
	for i := range n {
		x.F[i] = float64(ir.BF16ToFloat32(ir.BF16FromFloat32(float32(3 * r.NormFloat64()))))
		z.F[i] = float64(ir.BF16ToFloat32(ir.BF16FromFloat32(float32(3 * r.NormFloat64()))))
	}
	ops := []string{"Exp", "Sigmoid", "Silu", "Log", "Rsqrt"}
	mod := &ir.Module{}
	for _, op := range ops {
		for _, via := range []string{"pairs", "scalar"} {
			b := ir.NewBuilder(op + "_" + via)
			cast := func(v, to string) string { return b.Op("Cast", ir.Attrs{"to": ir.String(to)}, v) }
			p := b.Op("Mul", nil, cast(b.AddInput("x", ir.T(ir.BF16, n), ir.Data, nil), "f32"), cast(b.AddInput("z", ir.T(ir.BF16, n), ir.Data, nil), "f32"))
			b.Output("y", cast(b.Unary(op, p), "bf16"))
			if via == "scalar" {
				b.Output("p", p)
			}
			if err := b.Err(); err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			mod.Graphs = append(mod.Graphs, b.G)
		}
	}
	art, err := compilePlanned(mod, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := load(t, art)
	for _, op := range ops {
		want := m.run(t, op+"_scalar", map[string]*interp.Tensor{"x": x, "z": z}, 2)["y"]
		got := m.run(t, op+"_pairs", map[string]*interp.Tensor{"x": x, "z": z}, 2)["y"]
		bad := 0
		for i := range n {
			g, w := got.F[i], want.F[i]
			if math.IsNaN(g) && math.IsNaN(w) || math.Float64bits(g) == math.Float64bits(w) {
				continue
			}
			if bad < 3 {
				t.Errorf("%s: element %d: p = %v·%v: pairs %v, scalar %v", op, i, x.F[i], z.F[i], g, w)
			}
			bad++
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d elements differ", op, bad, n)
		}
	}
}
