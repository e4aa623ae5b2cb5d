package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image/png"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/runlock"
	"gitee.com/gidean/conv-linn/safetensors"
)

// The byte-level tiny LLaMA (vocab 260, d 16, 2 layers) on 16 KiB of
// Shakespeare: a training run of a few updates takes well under a second.
const (
	configBytes = "testdata/llama_bytes.json"
	corpus      = "testdata/shakespeare_16k.txt"
)

// tinyTrain are the flags of the tests' runs: batch 4 × 32, SLTrain r 4.
var tinyTrain = []string{"--data", corpus, "--batch-size", "4", "--max-length", "32", "--rank", "4", "--threads", "2"}

var (
	artOnce sync.Once
	artPath string
)

// tinyArtifact compiles the byte-level tiny model once into a .slc artifact,
// so that most training runs skip the compile.
func tinyArtifact(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler to link kernels")
	}
	artOnce.Do(func() {
		p := filepath.Join(filepath.Dir(slcBin), "bytes.slc") // removed with the binary
		if _, _, code := slc(t, "compile", configBytes, "--batch-size", "4", "--max-length", "32", "--rank", "4", "-o", p); code == 0 {
			artPath = p
		}
	})
	if artPath == "" {
		t.Fatal("compiling the tiny byte-level model failed")
	}
	return artPath
}

func trainArgs(model, saveDir string, extra ...string) []string {
	args := append([]string{"train", model, "--save-dir", saveDir}, tinyTrain...)
	return append(args, extra...)
}

// treeHash hashes every file under dir (names and contents), to show that a
// failed command changed nothing. The run lock is left out: every run that
// reaches the save dir takes it and records its pid there.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == runlock.FileName {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %v\n", rel, d.Type())
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			fmt.Fprintf(h, "-> %s\n", target)
		} else if !d.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// metricLines reads metrics.jsonl as generic objects.
func metricLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: line %q: %v", path, l, err)
		}
		out = append(out, m)
	}
	return out
}

// The main path: train from a config (with accumulation, clipping and weight
// decay), then eval, generate and export the checkpoint.
func TestTrainEvalGenerateExport(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	dir := t.TempDir()
	save := filepath.Join(dir, "run")
	// The seed's snake_case spellings, as an SLTrain script passes them.
	out := mustSlc(t, "train", "--model_config", configBytes, "--data", corpus, "--batch_size", "4", "--max_length", "32",
		"--lora_r", "4", "--peft_model", "sltrain", "--sp_ratio", "0.03", "--lora_alpha", "32", "--total_batch_size", "8",
		"--num_training_steps", "8", "--warmup_steps", "2", "--eval_every", "4", "--save_every", "4", "--lr", "3e-3",
		"--optimizer", "adamw", "--scheduler", "cosine", "--min_lr_ratio", "0.1", "--weight_decay", "0.1", "--grad_clipping", "1",
		"--save_dir", save, "--threads", "2", "--log-every", "2")
	for _, want := range []string{
		"Model: testdata/llama_bytes.json (LLaMA config; SLTrain r 4, δ 0.03, α 32; batch 4 × 32 tokens, seed 0, f32)",
		"Total params: 0.01M (10,506 in 49 tensors): dense 0.01M, low-rank 0.00M, sparse 0.00M",
		"Training: 8 updates × 8 sequences (2 micro-batches of 4) = 256 tokens per update",
		"step 1/8  loss ", "step 8/8  loss ", "eval at step 4: loss ", "eval at step 8: loss ",
		"saved " + filepath.Join(save, "checkpoint-4"), "Done: 8 updates in ",
		"Checkpoint: " + filepath.Join(save, "checkpoint-8"), "Loss curve: " + filepath.Join(save, "loss.png"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	if target, err := os.Readlink(filepath.Join(save, "latest")); err != nil || target != "checkpoint-8" {
		t.Errorf("latest -> %q, %v", target, err)
	}
	lines := metricLines(t, filepath.Join(save, "metrics.jsonl"))
	var steps, evals int
	var lastEval float64
	for _, m := range lines {
		if _, ok := m["loss"]; ok {
			steps++
			for _, k := range []string{"step", "loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s", "elapsed_s"} {
				if _, ok := m[k]; !ok {
					t.Errorf("step record lacks %q: %v", k, m)
				}
			}
			if m["step"].(float64) == 1 && m["lr"].(float64) != 0 {
				t.Errorf("the first update's lr is %v, want 0 (warmup)", m["lr"])
			}
		} else {
			evals++
			lastEval = m["eval_loss"].(float64)
			if math.Abs(m["eval_ppl"].(float64)-math.Exp(lastEval)) > 1e-9*math.Exp(lastEval) {
				t.Errorf("eval_ppl is not exp(eval_loss): %v", m)
			}
		}
	}
	if steps != 8 || evals != 2 {
		t.Errorf("metrics.jsonl has %d update and %d eval records, want 8 and 2", steps, evals)
	}
	f, err := os.Open(filepath.Join(save, "loss.png"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(f); err != nil {
		t.Errorf("loss.png: %v", err)
	}
	f.Close()

	// slc eval on the held-out split reproduces the run's final eval loss.
	out = mustSlc(t, "eval", save, "--data", corpus, "--eval-fraction", "0.05", "--threads", "2")
	if want := fmt.Sprintf("eval loss %.4f, perplexity %.2f", lastEval, math.Exp(lastEval)); !strings.Contains(out, want) {
		t.Errorf("slc eval: want %q in\n%s", want, out)
	}

	// slc generate: the prompt, then the same text for the same seed.
	gen := func(args ...string) string {
		return mustSlc(t, append([]string{"generate", filepath.Join(save, "latest"), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--threads", "2"}, args...)...)
	}
	a, b := gen("--seed", "5"), gen("--seed", "5", "--top-k", "0")
	if !strings.HasPrefix(a, "ROMEO:") || a != b || len(a) < len("ROMEO:\n") {
		t.Errorf("generate: %q and %q", a, b)
	}

	// slc export: the HF weights are the merged SLTrain layers.
	ck, err := checkpoint.Load(filepath.Join(save, "checkpoint-8"))
	if err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(dir, "hf")
	out = mustSlc(t, "export", save, "-o", hf)
	if !strings.Contains(out, "Wrote "+hf) {
		t.Errorf("export output: %q", out)
	}
	ex, err := safetensors.Read(filepath.Join(hf, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range []string{"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"} {
		w := floats(t, ex, name+".weight")
		bm, am := floats(t, ck.Model, name+".lora_B"), floats(t, ck.Model, name+".lora_A")
		vals := floats(t, ck.Model, name+".sparse_value")
		idx, err := ck.Model.Get(name + ".sparse_index").Int64s()
		if err != nil {
			t.Fatal(err)
		}
		shape := ex.Get(name + ".weight").Shape
		rows, cols, r := shape[0], shape[1], len(am)/shape[1]
		want := make([]float64, rows*cols)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				var s float64
				for k := 0; k < r; k++ {
					s += float64(bm[i*r+k]) * float64(am[k*cols+j]) * (32.0 / 4)
				}
				want[i*cols+j] = s
			}
		}
		for k, at := range idx {
			want[at] += float64(vals[k])
		}
		var worst, scale float64
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(w[i])-want[i]))
			scale = math.Max(scale, math.Abs(want[i]))
		}
		if worst > 1e-6*scale || scale == 0 {
			t.Errorf("%s.weight differs from B·A·scale + S by %g (max |W| %g)", name, worst, scale)
		}
		checked++
	}
	if ex.Get("model.layers.0.self_attn.q_proj.lora_A") != nil || ex.Get("lm_head.weight") == nil {
		t.Error("the HF export has SLTrain factors or lacks lm_head.weight")
	}
	// --format sltrain keeps the factors as trained, in bf16 when asked.
	sl := filepath.Join(dir, "sl")
	mustSlc(t, "export", filepath.Join(save, "checkpoint-8"), "-o", sl, "--format", "sltrain", "--dtype", "bfloat16")
	sx, err := safetensors.Read(filepath.Join(sl, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	a16 := sx.Get("model.layers.0.self_attn.q_proj.lora_A")
	if a16 == nil || a16.DType != ir.BF16 {
		t.Fatalf("sltrain export: lora_A %+v", a16)
	}
	if _, err := os.Stat(filepath.Join(sl, "sltrain_config.json")); err != nil {
		t.Error(err)
	}
	got, want := floats(t, sx, "model.layers.0.self_attn.q_proj.lora_A"), floats(t, ck.Model, "model.layers.0.self_attn.q_proj.lora_A")
	for i := range want {
		if got[i] != ir.BF16ToFloat32(ir.BF16FromFloat32(want[i])) {
			t.Fatalf("lora_A[%d]: %v, want bf16(%v)", i, got[i], want[i])
		}
	}
}

func floats(t *testing.T, f *safetensors.File, name string) []float32 {
	t.Helper()
	x := f.Get(name)
	if x == nil {
		t.Fatalf("no tensor %s", name)
	}
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// stepLosses returns the step, loss, lr and grad_norm of each update record.
func stepLosses(t *testing.T, path string) []string {
	var out []string
	for _, m := range metricLines(t, path) {
		if _, ok := m["loss"]; ok {
			out = append(out, fmt.Sprint(m["step"], m["loss"], m["lr"], m["grad_norm"]))
		}
	}
	return out
}

// SIGTERM in the middle of a run: the update in progress finishes, a
// checkpoint is saved, and slc exits 0 with a message saying how to resume.
func TestTrainSIGTERMSavesAndExits(t *testing.T) {
	art := tinyArtifact(t)
	save := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(slcBin, trainArgs(art, save, "--num-training-steps", "100000", "--log-every", "1")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	signalled := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !signalled && strings.HasPrefix(sc.Text(), "step 1/") {
			cmd.Process.Signal(syscall.SIGTERM)
			signalled = true
		}
	}
	err = cmd.Wait()
	if err != nil || stderr.String() != "" {
		t.Fatalf("exit: %v, stderr %q\n%s", err, stderr.String(), out.String())
	}
	m := regexp.MustCompile(`Interrupted at update (\d+) of 100000: saved (\S+)`).FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "Resume with: slc train --continue-from ") {
		t.Fatalf("no interruption message:\n%s", out.String())
	}
	ck, err := checkpoint.Load(m[2])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ck.State.Step) != m[1] || ck.State.Step < 1 {
		t.Errorf("checkpoint at update %d, message says %s", ck.State.Step, m[1])
	}
}

// A learning rate that blows up: one line, exit 1, the last good checkpoint
// kept and named, no checkpoint of the broken state.
func TestTrainNaNKeepsLastGoodCheckpoint(t *testing.T) {
	art := tinyArtifact(t)
	save := filepath.Join(t.TempDir(), "run")
	_, errs, code := slc(t, trainArgs(art, save, "--lr", "1e30", "--warmup-steps", "2", "--save-every", "1", "--eval-every", "1", "--num-training-steps", "20")...)
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "training stopped without saving this state") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	m := regexp.MustCompile(`the last good checkpoint is (\S+)$`).FindStringSubmatch(strings.TrimSpace(errs))
	if m == nil {
		t.Fatalf("stderr does not name the last good checkpoint: %q", errs)
	}
	ck, err := checkpoint.Load(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if latest, _ := os.Readlink(filepath.Join(save, "latest")); filepath.Join(save, latest) != m[1] {
		t.Errorf("latest -> %s, the message names %s", latest, m[1])
	}
	n := regexp.MustCompile(`update (\d+): the`).FindStringSubmatch(errs)
	if n == nil || fmt.Sprint(ck.State.Step) == n[1] {
		t.Errorf("checkpoint at update %d, failure %v", ck.State.Step, n)
	}
	entries, _ := os.ReadDir(save)
	for _, e := range entries {
		var step int64
		if _, err := fmt.Sscanf(e.Name(), "checkpoint-%d", &step); err == nil && step > ck.State.Step {
			t.Errorf("a checkpoint after the last good one: %s", e.Name())
		}
	}
}

// writeNpy writes a 1-D int32 .npy file.
func writeNpy(t *testing.T, path string, v []int32) {
	t.Helper()
	header := fmt.Sprintf("{'descr': '<i4', 'fortran_order': False, 'shape': (%d,), }", len(v))
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad) + "\n"
	buf := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	buf = append(buf, header...)
	for _, x := range v {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(x))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Bad input: one line, a non-zero exit, and the checkpoints of an earlier
// run in the save dir untouched, even with --overwrite.
func TestTrainBadInput(t *testing.T) {
	art := tinyArtifact(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	mustSlc(t, trainArgs(art, good, "--num-training-steps", "4", "--save-every", "2")...)
	before := treeHash(t, good)

	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	ids := make([]int32, 4*32*3)
	ids[200] = 300
	outOfRange := filepath.Join(dir, "ids.npy")
	writeNpy(t, outOfRange, ids)
	corrupt := filepath.Join(dir, "corrupt")
	os.MkdirAll(corrupt, 0o755)
	for _, f := range []string{"model.safetensors", "optimizer.safetensors", "training_state.json", "config.json", "sltrain_config.json"} {
		data, err := os.ReadFile(filepath.Join(good, "checkpoint-4", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.safetensors" {
			data = data[:len(data)/2]
		}
		os.WriteFile(filepath.Join(corrupt, f), data, 0o644)
	}
	foreign := filepath.Join(dir, "foreign")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "pytorch_model.bin"), []byte("not ours"), 0o644)
	badInit := filepath.Join(dir, "init.safetensors")
	if err := safetensors.Write(badInit, &safetensors.File{Tensors: []safetensors.Tensor{
		safetensors.FromFloat32s("model.embed_tokens.weight", ir.F32, []int{3, 16}, make([]float32, 48)),
		safetensors.FromFloat32s("model.layers.0.mlp.up_proj.weight", ir.F32, []int{24, 16}, make([]float32, 24*16)),
	}}); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	os.WriteFile(aFile, []byte("x"), 0o644)

	over := []string{"--save-dir", good, "--overwrite"}
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"missing data", append(trainArgs(art, good, "--data", "testdata/nope.txt"), "--overwrite"), 1, []string{"testdata/nope.txt"}},
		{"empty data", append(trainArgs(art, good, "--data", empty), "--overwrite"), 1, []string{empty, "no tokens"}},
		{"token id out of range", append(trainArgs(art, good, "--data", outOfRange), "--overwrite"), 1, []string{outOfRange, "300"}},
		{"no --data", []string{"train", art, "--save-dir", good}, 2, []string{"missing --data"}},
		{"total batch not a multiple", append(trainArgs(art, good, "--total-batch-size", "6"), "--overwrite"), 2, []string{"--total-batch-size: 6 is not a multiple of --batch-size 4"}},
		{"bf16 flag on an f32 artifact", append(trainArgs(art, good, "--dtype", "bfloat16"), "--overwrite"), 2, []string{"--dtype", "compiled f32 artifact"}},
		{"f16 training", append(trainArgs(art, good, "--dtype", "float16"), "--overwrite"), 2, []string{`"float16" is not f32, bf16 or bf16-mixed`}},
		{"another optimizer", append(trainArgs(art, good, "--optimizer", "sgd"), "--overwrite"), 2, []string{`"sgd"`, "adamw"}},
		{"artifact flags", append(trainArgs(art, good, "--rank", "8"), "--overwrite"), 2, []string{"--rank", "compiled artifact"}},
		{"save dir of another run", trainArgs(art, good), 1, []string{"already holds checkpoints", "--continue-from", "--overwrite"}},
		{"corrupt checkpoint", append([]string{"train", "--continue-from", corrupt}, tinyTrain...), 1, []string{corrupt, "model.safetensors"}},
		{"foreign checkpoint", append([]string{"train", "--continue-from", foreign}, tinyTrain...), 1, []string{foreign, "not an slc checkpoint"}},
		{"resume with another batch size", []string{"train", "--continue-from", good, "--batch-size", "2", "--threads", "2"}, 2, []string{"--batch-size 2 (the checkpoint has 4)"}},
		{"init with wrong names and shapes", append(trainArgs(art, good, "--init", badInit), over[2:]...), 1, []string{badInit, "model.embed_tokens.weight is f32[3,16] in the file, f32[260,16] in the model", "model.layers.0.mlp.up_proj.weight is not a parameter"}},
		{"unwritable save dir", trainArgs(art, filepath.Join(aFile, "run")), 1, []string{"--save-dir " + filepath.Join(aFile, "run")}},
		{"eval of a foreign checkpoint", []string{"eval", foreign, "--data", corpus}, 1, []string{"not an slc checkpoint"}},
		{"export to a non-export dir", []string{"export", good, "-o", good}, 1, []string{good}},
		{"export bad format", []string{"export", good, "-o", filepath.Join(dir, "x"), "--format", "tflite"}, 2, []string{`--format: "tflite"`}},
		{"generate bad temperature", []string{"generate", good, "--temperature", "-1"}, 2, []string{"--temperature"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := slc(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errs)
			}
			if !strings.HasPrefix(errs, "slc: ") || strings.Count(errs, "\n") != 1 {
				t.Errorf("stderr is not one 'slc: ' line: %q", errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q lacks %q", errs, w)
				}
			}
			if treeHash(t, good) != before {
				t.Fatal("the earlier run's save dir changed")
			}
		})
	}
}

func TestTrainCommandsHelp(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want []string
	}{
		{"train", []string{"--num-training-steps N, --num_training_steps N", "--total-batch-size N, --total_batch_size N", "--continue-from DIR, --continue_from DIR",
			"--rank r, --lora_r r", "--sp-ratio δ, --sp_ratio δ", "--sltrain-lowering HOW", "--shuffle", "--init FILE", "--metrics FILE", "0.003", "bfloat16"}},
		{"eval", []string{"--data PATH", "--eval-fraction F", "--eval-batches N"}},
		{"generate", []string{"--prompt TEXT", "--max-new-tokens N", "--temperature T", "--top-k K", "--seed S"}},
		{"export", []string{"--output DIR, -o DIR", "--format FORMAT", "--dtype DTYPE"}},
	} {
		out := mustSlc(t, c.cmd, "--help")
		for _, w := range append(c.want, "USAGE:") {
			if !strings.Contains(out, w) {
				t.Errorf("slc %s --help lacks %q:\n%s", c.cmd, w, out)
			}
		}
	}
}
