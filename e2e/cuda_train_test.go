package e2e

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/internal/ptxemu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/version"
)

// TestCUDATrainMatchesCPU trains the tiny LLaMA two updates of two
// micro-batches (clipping active, weight decay) twice from the same
// weights: through the runtime's cuda half on the PTX emulator
// (ptxemu.Device, in ptxrun) and through the CPU runtime here, the
// artifacts compiled from one module, and wants every loss, gradient norm
// and, at the end, every state tensor within 1e-5 norm-wise.
func TestCUDATrainMatchesCPU(t *testing.T) {
	lib := ptxemu.Find(".")
	if lib == "" {
		t.Skip("no PTX emulator (../shared/tools/ptxemu): the cuda runtime is not run")
	}
	dir := t.TempDir()
	ptxrun := filepath.Join(dir, "ptxrun")
	if out, err := exec.Command("go", "build", "-o", ptxrun, "../internal/ptxemu/ptxrun").CombinedOutput(); err != nil {
		t.Fatalf("building ptxrun: %v\n%s", err, out)
	}
	for _, c := range []struct{ peft, lowering string }{{"full", "auto"}, {"sltrain", "merged"}, {"sltrain", "factored"}} {
		t.Run(c.peft+"-"+c.lowering, func(t *testing.T) {
			cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
			if err != nil {
				t.Fatal(err)
			}
			m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 8, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			o := passes.DefaultOptions()
			o.PEFT, o.Rank, o.SpRatio, o.Seed = c.peft, 4, 0.1, 3
			s := &passes.State{Module: m, Options: o, Verify: true}
			if err := passes.Run(s, passes.Pipeline); err != nil {
				t.Fatal(err)
			}
			compile := func(device string) *artifact.Artifact {
				art, err := codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: c.lowering, Device: device})
				if err != nil {
					t.Fatal(err)
				}
				return art
			}
			gpuArt, cpuArt := compile("cuda"), compile("")
			cpu, err := runtime.Load(cpuArt, runtime.Options{Threads: 2, Version: version.Version})
			if err != nil {
				t.Fatal(err)
			}
			defer cpu.Close()

			// B = 0 at init would hide errors in dA: the same lora_B
			// values on both.
			work := t.TempDir()
			rng := ir.NewRNG(11)
			files := map[string]string{}
			for _, name := range cpu.StateNames() {
				if !strings.HasSuffix(name, ".lora_B") {
					continue
				}
				typ, _ := cpu.StateType(name)
				v := make([]float32, typ.NumElements())
				raw := make([]byte, 4*len(v))
				for i := range v {
					v[i] = float32(0.2 * (rng.Float64() - 0.5))
					binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v[i]))
				}
				if err := cpu.SetStateFloat32(name, v); err != nil {
					t.Fatal(err)
				}
				files[name] = filepath.Join(work, name+".bin")
				if err := os.WriteFile(files[name], raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			type run struct {
				Program string             `json:"program"`
				Data    map[string][]int64 `json:"data,omitempty"`
				Scalars map[string]float64 `json:"scalars,omitempty"`
			}
			var runs []run
			n := m.Graph("train_step").Input("input_ids").Type.NumElements()
			for step := 1; step <= 2; step++ {
				for range 2 {
					ids := make([]int64, n)
					for i := range ids {
						ids[i] = int64(rng.Uint64n(32))
					}
					runs = append(runs, run{"train_step", map[string][]int64{"input_ids": ids}, map[string]float64{"grad_scale": 0.5}})
				}
				runs = append(runs, run{Program: "update", Scalars: map[string]float64{"lr": 0.01, "step": float64(step), "weight_decay": 0.1, "max_grad_norm": 0.5}})
			}
			artPath := filepath.Join(work, "m.slc")
			if err := artifact.WriteFile(artPath, gpuArt); err != nil {
				t.Fatal(err)
			}
			session, _ := json.Marshal(map[string]any{"artifact": artPath, "emulator": lib, "out": filepath.Join(work, "out"),
				"Block": emuBlock, "Grid": emuGrid, "state": files, "runs": runs})
			sf := filepath.Join(work, "session.json")
			if err := os.WriteFile(sf, session, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(ptxrun, sf).CombinedOutput(); err != nil {
				if strings.Contains(string(out), "cannot open shared object") {
					t.Skipf("the PTX emulator's libraries are missing (bash ../shared/tools/ptxemu/deps.sh): %s", lastLine(out))
				}
				t.Fatalf("ptxrun: %v\n%s", err, checkLines(out))
			}
			f32s := func(b []byte) []float64 {
				v := make([]float64, len(b)/4)
				for i := range v {
					v[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
				}
				return v
			}
			read := func(i int, file string) []float64 {
				b, err := os.ReadFile(filepath.Join(work, "out", strconv.Itoa(i), file))
				if err != nil {
					t.Fatal(err)
				}
				return f32s(b)
			}
			for i, r := range runs {
				res, err := cpu.Run(r.Program, runtime.Inputs{Data: r.Data, Scalars: r.Scalars})
				if err != nil {
					t.Fatal(err)
				}
				for _, name := range []string{"loss", "grad_norm"} {
					if x, ok := res[name]; ok {
						want, got := f32s(x.Data)[0], read(i, "out."+name+".bin")[0]
						if e := math.Abs(got-want) / math.Abs(want); e > 1e-5 {
							t.Errorf("run %d (%s): %s %v on the GPU, %v on the CPU (rel. %.2g)", i, r.Program, name, got, want, e)
						} else {
							t.Logf("run %d (%s): %s %.7g on the GPU, %.7g on the CPU", i, r.Program, name, got, want)
						}
					}
				}
			}
			worst, worstName := 0.0, ""
			for _, name := range cpu.StateNames() {
				typ, _ := cpu.StateType(name)
				if typ.DType != ir.F32 {
					continue
				}
				x, _ := cpu.State(name)
				got, want := read(len(runs)-1, "state."+name+".bin"), f32s(x.Data)
				var d, nrm float64
				for i := range want {
					d += (got[i] - want[i]) * (got[i] - want[i])
					nrm += want[i] * want[i]
				}
				if nrm == 0 && d == 0 {
					continue
				}
				if e := math.Sqrt(d / math.Max(nrm, 1e-60)); e > worst {
					worst, worstName = e, name
				}
			}
			if worst > 1e-5 {
				t.Errorf("after 2 updates, %s differs from the CPU runtime's by %.3g (norm-wise)", worstName, worst)
			}
			t.Logf("after 2 updates every f32 state tensor within %.3g of the CPU runtime's (worst %s)", worst, worstName)
		})
	}
}
