package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/internal/ptxemu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
)

// The cuda device without a GPU: the tiny LLaMA's programs compiled to PTX
// (every kernel of train_step, update and eval) run in the PTX emulator,
// kernel after kernel over host buffers laid out as the artifact says, and
// are compared with the reference interpreter from the same state after
// every program: two updates of two micro-batches with clipping and weight
// decay, then an eval — full-rank and SLTrain in both lowerings. The tests skip when the emulator (../shared/tools/ptxemu) is absent.

// stateTol is the norm-wise tolerance of every state tensor (gradients,
// parameters, AdamW moments) against the interpreter run from the same
// state, and of every loss.
const stateTol = 1e-5

// emuBlock and emuGrid are the launch the emulator runs every kernel with:
// 2 blocks of 32 threads (the kernels split their work over any thread count).
const emuBlock, emuGrid = 32, 2

func TestCUDAProgramsInEmulator(t *testing.T) {
	lib := ptxemu.Find(".")
	if lib == "" {
		t.Skip("no PTX emulator (../shared/tools/ptxemu): the cuda kernels are not run")
	}
	// The emulator links its own LLVM, which cannot share a process with
	// the compiler's: it runs in ptxrun, a process without LLVM 19.
	dir := t.TempDir()
	ptxrun := filepath.Join(dir, "ptxrun")
	if out, err := exec.Command("go", "build", "-o", ptxrun, "../internal/ptxemu/ptxrun").CombinedOutput(); err != nil {
		t.Fatalf("building ptxrun: %v\n%s", err, out)
	}
	for _, c := range []struct{ peft, lowering string }{{"full", "auto"}, {"sltrain", "merged"}, {"sltrain", "factored"}} {
		t.Run(c.peft+"-"+c.lowering, func(t *testing.T) {
			m, art := compileTinyCUDA(t, c.peft, c.lowering)
			if art.Target.Kind != "cuda" || !strings.Contains(string(art.Code), ".target sm_90") {
				t.Fatalf("target %+v; PTX header %q", art.Target, firstLine(art.Code, ".target"))
			}
			work := t.TempDir()
			artPath := filepath.Join(work, "m.slc")
			if err := artifact.WriteFile(artPath, art); err != nil {
				t.Fatal(err)
			}
			ref := newReference(t, m)
			rng := ir.NewRNG(9)
			// B = 0 at init would hide errors in dA: give every lora_B values
			// (as TestTrainStepsMatchInterpreter does).
			for name, v := range ref.state {
				if strings.HasSuffix(name, ".lora_B") {
					for i := range v.F {
						v.F[i] = float64(float32(0.2 * (rng.Float64() - 0.5)))
					}
				}
			}
			types := stateTypes(art)
			session := map[string]any{"artifact": artPath, "emulator": lib, "out": filepath.Join(work, "out"), "Block": emuBlock, "Grid": emuGrid}
			files := map[string]string{}
			for name, v := range ref.state {
				typ, ok := types[name]
				if !ok {
					continue
				}
				f := filepath.Join(work, "init."+name+".bin")
				if err := os.WriteFile(f, encode(t, typ, v), 0o644); err != nil {
					t.Fatal(err)
				}
				files[name] = f
			}
			session["state"] = files
			// The runs: two updates of two micro-batches, then an eval.
			type run struct {
				Program string             `json:"program"`
				Data    map[string][]int64 `json:"data,omitempty"`
				Scalars map[string]float64 `json:"scalars,omitempty"`
			}
			var runs []run
			ids := m.Graph("train_step").Input("input_ids").Type
			tokensOf := func() map[string][]int64 {
				tokens := make([]int64, ids.NumElements())
				for i := range tokens {
					tokens[i] = int64(rng.Uint64n(32))
				}
				return map[string][]int64{"input_ids": tokens}
			}
			for step := 1; step <= 2; step++ {
				for range 2 {
					runs = append(runs, run{Program: "train_step", Data: tokensOf(), Scalars: map[string]float64{"grad_scale": 0.5}})
				}
				runs = append(runs, run{Program: "update", Scalars: map[string]float64{"lr": 0.01, "step": float64(step), "weight_decay": 0.1, "max_grad_norm": 0.5}})
			}
			runs = append(runs, run{Program: "eval", Data: tokensOf()})
			session["runs"] = runs
			js, _ := json.Marshal(session)
			sf := filepath.Join(work, "session.json")
			if err := os.WriteFile(sf, js, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(ptxrun, sf).CombinedOutput(); err != nil {
				if strings.Contains(string(out), "cannot open shared object") {
					t.Skipf("the PTX emulator's libraries are missing (bash ../shared/tools/ptxemu/deps.sh): %s", lastLine(out))
				}
				t.Fatalf("ptxrun: %v\n%s", err, out)
			}
			// Each program is judged alone: the interpreter starts it from the
			// state the device had before it (the first from the initial state),
			// so a rounding difference of one program cannot grow in the next.
			names := make([]string, 0, len(ref.state))
			for k := range ref.state {
				names = append(names, k)
			}
			sort.Strings(names)
			for i, r := range runs {
				when := fmt.Sprintf("run %d (%s)", i, r.Program)
				if i > 0 {
					prev := filepath.Join(work, "out", strconv.Itoa(i-1))
					for _, name := range names {
						if types[name].DType == ir.F32 {
							ref.state[name] = interp.FromFloats(types[name], widen(readF32(t, filepath.Join(prev, "state."+name+".bin"))))
						}
					}
				}
				g := m.Graph(r.Program)
				bind := map[string]*interp.Tensor{}
				for k, v := range r.Data {
					bind[k] = interp.FromInts(g.Input(k).Type, v)
				}
				for k, v := range r.Scalars {
					bind[k] = interp.FromFloats(g.Input(k).Type, []float64{v})
				}
				want := ref.run(t, r.Program, bind)
				dirI := filepath.Join(work, "out", strconv.Itoa(i))
				if w, ok := want["loss"]; ok {
					got := readF32(t, filepath.Join(dirI, "out.loss.bin"))
					if math.Abs(float64(got[0])-w.F[0]) > 1e-5*math.Abs(w.F[0]) {
						t.Errorf("%s: loss %v, interpreter %v", when, got[0], w.F[0])
					}
				}
				worst, worstName := 0.0, ""
				for _, name := range names {
					if types[name].DType != ir.F32 {
						continue
					}
					got := readF32(t, filepath.Join(dirI, "state."+name+".bin"))
					e := relErr(got, ref.state[name].F)
					if e > worst {
						worst, worstName = e, name
					}
					if e > stateTol {
						t.Errorf("%s: %s differs from the interpreter by %.3g (norm-wise; tolerance %g)", when, name, e, stateTol)
					}
				}
				t.Logf("%s: worst state error %.3g (%s)", when, worst, worstName)
			}
			t.Logf("%d runs of %d programs' kernels in the emulator", len(runs), len(art.Programs))
		})
	}
}

// stateTypes are the artifact's state tensors by name.
func stateTypes(art *artifact.Artifact) map[string]ir.Type {
	types := map[string]ir.Type{}
	for _, p := range art.Programs {
		for _, s := range p.Slots {
			if s.Kind == artifact.SlotState {
				types[s.Name] = s.Type
			}
		}
	}
	return types
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func widen(f []float32) []float64 {
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// compileTinyCUDA compiles the f32 tiny LLaMA for the cuda device.
func compileTinyCUDA(t *testing.T, peft, lowering string) (*ir.Module, *artifact.Artifact) {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 8, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	o := passes.DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.Seed = peft, 4, 0.1, 3
	s := &passes.State{Module: m, Options: o, Verify: true}
	if err := passes.Run(s, passes.Pipeline); err != nil {
		t.Fatal(err)
	}
	art, err := codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: lowering, Device: "cuda"})
	if err != nil {
		t.Fatal(err)
	}
	return m, art
}

func firstLine(b []byte, prefix string) string {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// encode is v's raw little-endian bytes in typ's dtype.
func encode(t *testing.T, typ ir.Type, v *interp.Tensor) []byte {
	dst := make([]byte, typ.Bytes())
	switch typ.DType {
	case ir.F32:
		for i, x := range v.F {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(float32(x)))
		}
	case ir.I64:
		for i, x := range v.I {
			binary.LittleEndian.PutUint64(dst[8*i:], uint64(x))
		}
	case ir.I32:
		for i, x := range v.I {
			binary.LittleEndian.PutUint32(dst[4*i:], uint32(x))
		}
	default:
		t.Fatalf("state of dtype %v", typ.DType)
	}
	return dst
}
