package codegen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
)

// lossHead builds the loss head of a causal LM as autodiff and
// mixed-precision leave it — logits = Linear(h, W), ce, its gradient,
// dh = dl·W, dW = dlᵀ·h — for T rows, V classes and hidden size d, in
// "f32", "bf16" or "bf16-mixed". With eval only the loss is built.
func lossHead(t testing.TB, mode string, T, V, d int, eval bool) *ir.Module {
	b := ir.NewBuilder("head")
	dt := ir.F32
	if mode == "bf16" {
		dt = ir.BF16
	}
	h := b.AddInput("h", ir.T(dt, T, d), ir.Data, nil)
	w := b.AddInput("w", ir.T(dt, V, d), ir.Data, nil)
	labels := b.AddInput("labels", ir.T(ir.I64, T), ir.Data, nil)
	var logits, gradLogits string
	if mode == "bf16-mixed" {
		cast := func(v string) string { return b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, v) }
		h, w = cast(h), cast(w)
		logits = b.Op("Linear", ir.Attrs{"out_dtype": ir.String("f32")}, h, w)
		if !eval {
			gradLogits = cast(logits)
		}
	} else {
		logits = b.Op("Linear", nil, h, w)
		gradLogits = logits
	}
	b.Output("ce", b.Op("SoftmaxCrossEntropy", nil, logits, labels))
	if !eval {
		dloss := b.AddInput("dloss", ir.T(map[bool]ir.DType{true: ir.BF16, false: ir.F32}[mode == "bf16"], T), ir.Data, nil)
		dl := b.Op("SoftmaxCrossEntropyGrad", nil, gradLogits, labels, dloss)
		var attrs ir.Attrs
		if mode == "bf16-mixed" {
			dl = b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, dl)
			attrs = ir.Attrs{"out_dtype": ir.String("f32")}
		}
		mm := func(x, y string, ta int64) string {
			a := ir.Attrs{"transpose_a": ir.Int(ta)}
			for k, v := range attrs {
				a[k] = v
			}
			return b.Op("MatMul", a, x, y)
		}
		b.Output("dh", mm(dl, w, 0))
		b.Output("dw", mm(dl, h, 1))
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return &ir.Module{Graphs: []*ir.Graph{b.G}}
}

// compileHead compiles m's one graph unfused, or fused by
// fuse-linear-xent with chunks of the given rows (checking that it fused).
func compileHead(t testing.TB, m *ir.Module, fused bool, chunk int64) *machine {
	t.Helper()
	m = m.Clone()
	g := m.Graphs[0]
	groups, err := passes.PartitionGraph(g)
	if err != nil {
		t.Fatal(err)
	}
	if fused {
		var fg []*passes.Group
		if groups, fg, err = passes.FuseLinearCrossEntropy(g, groups); err != nil {
			t.Fatal(err)
		}
		if len(fg) != 1 {
			t.Fatalf("fuse-linear-xent fused %d loss heads, want 1", len(fg))
		}
	}
	plan, err := passes.PlanMemory(g, groups)
	if err != nil {
		t.Fatal(err)
	}
	art, err := Compile(m, Options{Groups: map[string][]*passes.Group{g.Name: groups}, Plans: map[string]*passes.MemoryPlan{g.Name: plan}, XentChunkRows: chunk})
	if err != nil {
		t.Fatal(err)
	}
	checkArtifact(t, art)
	return load(t, art)
}

// TestLinearCrossEntropy runs the chunked loss head against the reference
// interpreter and against the unfused kernels, in f32, bf16 and bf16-mixed:
// T not a multiple of the chunk, V not a multiple of the vector width,
// chunks of one row and of all rows, rows whose dloss is 0 (the positions a
// loss mask leaves out) including a whole chunk of them, and 1, 2 and 3
// threads. The loss and dh come out as the unfused kernels compute them;
// dW's f32 sum is split at the chunk boundaries.
func TestLinearCrossEntropy(t *testing.T) {
	const T, V, d = 13, 37, 24
	for _, mode := range []string{"f32", "bf16", "bf16-mixed"} {
		for _, eval := range []bool{false, true} {
			mod := lossHead(t, mode, T, V, d, eval)
			g := mod.Graphs[0]
			r := rand.New(rand.NewPCG(7, 8))
			vals := map[string]*interp.Tensor{}
			for _, in := range g.Inputs {
				switch in.Name {
				case "labels":
					vals[in.Name] = random(r, in.Type, gen{kind: "idx", n: V})
				default:
					v := random(r, in.Type, gen{})
					for i := range v.F {
						v.F[i] = interp.RoundTo(in.Type.DType, v.F[i]*0.3)
					}
					vals[in.Name] = v
				}
			}
			if dl := vals["dloss"]; dl != nil {
				for _, i := range []int{0, 4, 5, 6, 7, 12} { // rows 4..7: a whole chunk of 4
					dl.F[i] = 0
				}
			}
			want, err := interp.Run(g, vals)
			if err != nil {
				t.Fatal(err)
			}
			unfused := compileHead(t, mod, false, 0).run(t, "head", clone(vals), 2)
			for _, chunk := range []int64{4, 1, T, 0} {
				t.Run(fmt.Sprintf("%s/eval=%v/chunk=%d", mode, eval, chunk), func(t *testing.T) {
					m := compileHead(t, mod, true, chunk)
					for _, nth := range []int{1, 2, 3} {
						got := m.run(t, "head", clone(vals), nth)
						for _, o := range g.Outputs {
							tol := 1e-5
							if mode != "f32" {
								tol = 1.0 / 128 // a bf16 ulp, norm-wise
							}
							if err := compareTensors(got[o.Name], want[o.Name], tol, true); err != nil {
								t.Errorf("%d threads: %s against the interpreter: %v", nth, o.Name, err)
							}
							// The unfused kernels: the same loss (same GEMM on
							// the same rows, same row arithmetic); dh and dW
							// within the summation order of their GEMMs.
							tol = 1e-6
							if o.Name == "ce" {
								tol = 0
							} else if mode == "bf16" {
								tol = 1.0 / 256
							}
							if err := compareTensors(got[o.Name], unfused[o.Name], tol, o.Name != "ce"); err != nil {
								t.Errorf("%d threads: %s against the unfused kernels: %v", nth, o.Name, err)
							}
						}
						if dh := got["dh"]; dh != nil {
							for _, i := range []int{4, 5, 6, 7} {
								for j := range d {
									if v := dh.F[i*d+j]; v != 0 {
										t.Fatalf("dh[%d, %d] = %v for a row whose dloss is 0", i, j, v)
									}
								}
							}
						}
					}
				})
			}
		}
	}
}

// clone copies a set of values (a run overwrites nothing of its inputs,
// but each run gets its own).
func clone(vals map[string]*interp.Tensor) map[string]*interp.Tensor {
	out := map[string]*interp.Tensor{}
	for k, v := range vals {
		out[k] = v.Clone()
	}
	return out
}

// TestLinearCrossEntropySteps trains llama_tiny for three steps (train_step,
// then update) twice — the pipeline with fuse-linear-xent, in chunks of 4
// of its 14 rows, and without it — in f32, bf16 and bf16-mixed, and with the
// seed's documents rows (a loss mask with a fully masked row) in bf16: the
// losses, the gradient norms and every parameter after the last update
// agree within the summation-order differences of dW.
func TestLinearCrossEntropySteps(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles six tiny LLaMAs")
	}
	for _, c := range []struct {
		name  string
		dt    ir.DType
		mixed bool
		mask  bool
	}{{"f32", ir.F32, false, false}, {"bf16", ir.BF16, false, false}, {"bf16-mixed", ir.F32, true, false}, {"bf16-documents", ir.BF16, false, true}} {
		t.Run(c.name, func(t *testing.T) {
			run := func(fused bool) (losses []float64, params map[string]*interp.Tensor) {
				cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
				if err != nil {
					t.Fatal(err)
				}
				m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 8, Seed: 1, DType: c.dt, LossMask: c.mask})
				if err != nil {
					t.Fatal(err)
				}
				s := &passes.State{Module: m, Options: passes.DefaultOptions()}
				s.Options.Rank, s.Options.BF16Mixed = 4, c.mixed
				var list []passes.Pass
				for _, p := range passes.Pipeline {
					if fused || p.Name != "fuse-linear-xent" {
						list = append(list, p)
					}
				}
				if err := passes.Run(s, list); err != nil {
					t.Fatal(err)
				}
				art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, XentChunkRows: 4})
				if err != nil {
					t.Fatal(err)
				}
				mach := load(t, art)
				state := map[string]*interp.Tensor{}
				for _, g := range s.Module.Graphs {
					st, err := interp.InitState(g)
					if err != nil {
						t.Fatal(err)
					}
					for k, v := range st {
						if state[k] == nil {
							state[k] = v
						}
					}
				}
				r := rand.New(rand.NewPCG(5, 6))
				for step := 1; step <= 3; step++ {
					for _, name := range []string{"train_step", "update"} {
						g := s.Module.Graph(name)
						vals := map[string]*interp.Tensor{}
						for _, in := range g.Inputs {
							switch {
							case state[in.Name] != nil:
								vals[in.Name] = state[in.Name].Clone()
							case in.Name == "input_ids":
								vals[in.Name] = random(r, in.Type, gen{kind: "idx", n: 32})
							case in.Name == "loss_mask":
								mk := interp.NewTensor(in.Type)
								for i := range mk.F {
									mk.F[i] = float64(r.IntN(2))
								}
								for i := range 7 { // row 0 fully masked
									mk.F[i] = 0
								}
								mk.F[7] = 1
								vals[in.Name] = mk
							case in.Name == "step":
								vals[in.Name] = scalarValue(in.Type, float64(step))
							case in.Name == "lr":
								vals[in.Name] = scalarValue(in.Type, 1e-2)
							case in.Name == "grad_scale":
								vals[in.Name] = scalarValue(in.Type, 1)
							case in.Name == "weight_decay":
								vals[in.Name] = scalarValue(in.Type, 0)
							case in.Role == ir.Scalar:
								vals[in.Name] = scalarValue(in.Type, 1)
							default:
								t.Fatalf("%s: no value for %q", name, in.Name)
							}
						}
						out := mach.run(t, name, vals, 2)
						for _, o := range g.Outputs {
							if o.Updates != "" {
								state[o.Updates] = out[o.Name]
							} else {
								losses = append(losses, out[o.Name].F[0])
							}
						}
					}
				}
				params = map[string]*interp.Tensor{}
				for _, in := range s.Module.Graph("train_step").Inputs {
					if in.Role == ir.Param {
						params[in.Name] = state[in.Name]
					}
				}
				return losses, params
			}
			fl, fp := run(true)
			ul, up := run(false)
			tol := 1e-5
			if c.dt == ir.BF16 || c.mixed {
				tol = 1.0 / 64
			}
			for i := range ul {
				if d := math.Abs(fl[i] - ul[i]); !(d <= tol*math.Abs(ul[i])) {
					t.Errorf("loss/grad norm %d: fused %v, unfused %v", i, fl[i], ul[i])
				}
			}
			for name, w := range up {
				if err := compareTensors(fp[name], w, tol, true); err != nil {
					t.Errorf("%s after 3 steps: %v", name, err)
				}
			}
			t.Logf("losses and grad norms, fused %v, unfused %v", fl, ul)
		})
	}
}

// BenchmarkLinearCrossEntropy60M times llama_60m's training loss head (8 ×
// 255 rows, vocabulary 32000, hidden size 512: lm_head, the cross-entropy,
// its gradient, dhidden and dW) on 2 threads — unfused, chunked (the default
// chunk, 512 rows) and in chunks of 256 rows — in f32, bf16 and bf16-mixed,
// and reports each program's arena (logits, gradient and transients).
func BenchmarkLinearCrossEntropy60M(b *testing.B) {
	const T, V, d = 8 * 255, 32000, 512
	for _, mode := range []string{"f32", "bf16", "bf16-mixed"} {
		mod := lossHead(b, mode, T, V, d, false)
		for _, chunk := range []int64{-1, 0, 256} {
			name := fmt.Sprintf("chunk=%d", chunk)
			if chunk < 0 {
				name = "unfused"
			} else if chunk == 0 {
				name = "chunked"
			}
			b.Run(mode+"/"+name, func(b *testing.B) {
				m := compileHead(b, mod, chunk >= 0, chunk)
				p := m.program(b, "head")
				b.ReportMetric(float64(p.ArenaBytes)/(1<<20), "arena-MiB")
				benchProgram(b, m, p)
			})
		}
	}
}
