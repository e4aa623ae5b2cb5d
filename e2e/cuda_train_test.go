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
	"gitee.com/gidean/conv-linn/target"
	"gitee.com/gidean/conv-linn/version"
)

// TestCUDATrainMatchesCPU trains the tiny LLaMA two updates of two
// micro-batches (clipping active, weight decay) twice from the same
// weights: through the runtime's cuda half on the PTX emulator
// (ptxemu.Device, in ptxrun) and through the CPU runtime here, the
// artifacts compiled from one module, and wants every loss, gradient norm
// and, at the end, every state tensor within 1e-5 norm-wise (ptxrun's
// expect). SLC_CUDA_PREPARE=DIR also writes each case for the device check.
func TestCUDATrainMatchesCPU(t *testing.T) {
	lib := ptxemu.Find(".")
	if lib == "" {
		t.Skip("no PTX emulator (../shared/tools/ptxemu): the cuda runtime is not run")
	}
	dir := t.TempDir()
	ptxrun := filepath.Join(dir, "ptxrun")
	if out, err := exec.Command("go", "build", "-o", ptxrun, "../cmd/ptxrun").CombinedOutput(); err != nil {
		t.Fatalf("building ptxrun: %v\n%s", err, out)
	}
	// The last two cases swap the optimizer: adam8bit (code tables, block
	// absmax, u8 states; tensors from 100 elements on) and adafactor
	// (row and column means).
	for _, c := range []struct{ peft, lowering, opt string }{{"full", "auto", ""}, {"sltrain", "merged", ""}, {"sltrain", "factored", ""},
		{"sltrain", "merged", "adam8bit"}, {"sltrain", "merged", "adafactor"}} {
		name := c.peft + "-" + c.lowering
		if c.opt != "" {
			name += "-" + c.opt
		}
		t.Run(name, func(t *testing.T) {
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
			if c.opt != "" {
				o.Optimizer, o.Adam8bitMinSize = c.opt, 100
			}
			s := &passes.State{Module: m, Options: o, Verify: true}
			if err := passes.Run(s, passes.Pipeline); err != nil {
				t.Fatal(err)
			}
			compile := func(tg target.Target) *artifact.Artifact {
				ds, err := s.ForDevice(tg.Device.String()) // cuda: the loss head unfused
				if err != nil {
					t.Fatal(err)
				}
				art, err := codegen.Compile(ds.Module, codegen.Options{Groups: ds.Groups, Plans: ds.Plans, SLTrainLowering: c.lowering, Target: tg})
				if err != nil {
					t.Fatal(err)
				}
				return art
			}
			gpuArt, cpuArt := compile(target.NewCUDA("", "")), compile(target.Host())
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
			// The CPU runtime's results, where ptxrun's expect finds them:
			// every loss and gradient norm, every f32 state tensor at the end.
			expectDir := filepath.Join(work, "expect")
			for i, r := range runs {
				res, err := cpu.Run(r.Program, runtime.Inputs{Data: r.Data, Scalars: r.Scalars})
				if err != nil {
					t.Fatal(err)
				}
				dir := filepath.Join(expectDir, strconv.Itoa(i))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, x := range res {
					if x.Type.DType == ir.F32 {
						writeFile(t, filepath.Join(dir, "out."+name+".bin"), x.Data)
					}
				}
				if i < len(runs)-1 {
					continue
				}
				for _, name := range cpu.StateNames() {
					if x, _ := cpu.State(name); x.Type.DType == ir.F32 {
						writeFile(t, filepath.Join(dir, "state."+name+".bin"), x.Data)
					}
				}
			}
			artPath := filepath.Join(work, "m.slc")
			if err := artifact.WriteFile(artPath, gpuArt); err != nil {
				t.Fatal(err)
			}
			session := map[string]any{"artifact": artPath, "emulator": lib, "out": filepath.Join(work, "out"),
				"state": files, "runs": runs, "expect": expectDir, "expect_tol": 1e-5} // each step on its own launch geometry, the artifact's
			if dir := os.Getenv("SLC_CUDA_PREPARE"); dir != "" {
				prepareTrain(t, filepath.Join(dir, "train-"+name), session)
			}
			js, _ := json.Marshal(session)
			sf := filepath.Join(work, "session.json")
			writeFile(t, sf, js)
			out, err := exec.Command(ptxrun, sf).CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "cannot open shared object") {
					t.Skipf("the PTX emulator's libraries are missing (bash ../shared/tools/ptxemu/deps.sh): %s", lastLine(out))
				}
				t.Fatalf("ptxrun: %v\n%s", err, checkLines(out))
			}
			t.Logf("ptxrun:\n%s", checkLines(out))
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// prepareTrain copies a train case for the device check: the artifact, the
// initial lora_B values and the CPU's results beside a session that runs on
// the GPU's driver with a real launch and compares (paths relative to it).
func prepareTrain(t *testing.T, dir string, session map[string]any) {
	t.Helper()
	s := map[string]any{}
	for k, v := range session {
		s[k] = v
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cp := func(src, name string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name), b)
		return name
	}
	s["artifact"] = cp(session["artifact"].(string), "m.slc")
	state := map[string]string{}
	for name, f := range session["state"].(map[string]string) {
		state[name] = cp(f, filepath.Base(f))
	}
	s["state"] = state
	exp := session["expect"].(string)
	err := filepath.WalkDir(exp, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(exp, path)
			cp(path, filepath.Join("expect", rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s["expect"], s["out"], s["device"] = "expect", "out", "cuda"
	delete(s, "emulator")
	js, _ := json.Marshal(s)
	writeFile(t, filepath.Join(dir, "session.json"), js)
}
