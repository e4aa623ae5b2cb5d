package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/safetensors"
	"gitee.com/gidean/conv-linn/train"
)

// A real run with the seed's cosine_restarts and --train_scaling, in pure
// bf16: every update's logged lr is the seed's schedule, each layer's
// scaling trains away from 1 and is saved under the seed's name, a run
// resumed mid-way ends bit-identical, and eval and the HF export take the
// trained scales.
func TestTrainCosineRestartsTrainScaling(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	dir := t.TempDir()
	args := func(save string) []string {
		return trainArgs(configBytes, save, "--num-training-steps", "8", "--warmup-steps", "2", "--lr", "0.01",
			"--scheduler", "cosine_restarts", "--cycle_length", "4", "--restart_warmup_steps", "2",
			"--train_scaling", "--weight-decay", "0.1", "--dtype", "bf16", "--save-every", "4", "--eval-every", "0")
	}
	whole, part := filepath.Join(dir, "whole"), filepath.Join(dir, "part")
	out := mustSlc(t, args(whole)...)
	if !strings.Contains(out, "cosine_restarts (cycle 4, restart warmup 2, adjust step 0)") {
		t.Errorf("the summary does not name the schedule:\n%s", out)
	}
	sched := train.Schedule{Kind: train.CosineRestarts, LR: 0.01, Warmup: 2, Total: 8, MinLRRatio: 0.1, Cycle: 4, RestartWarmup: 2}
	steps := 0
	for _, m := range metricLines(t, filepath.Join(whole, "metrics.jsonl")) {
		lr, ok := m["lr"].(float64)
		if !ok {
			continue
		}
		u := int(m["step"].(float64)) - 1
		if want := sched.At(u); lr != want {
			t.Errorf("update %d: lr %v, the seed's schedule %v", u+1, lr, want)
		}
		steps++
	}
	if steps != 8 {
		t.Fatalf("%d updates logged an lr, want 8", steps)
	}
	mustSlc(t, args(part)...)
	if err := os.RemoveAll(filepath.Join(part, "checkpoint-8")); err != nil {
		t.Fatal(err)
	}
	mustSlc(t, "train", "--continue-from", filepath.Join(part, "checkpoint-4"), "--threads", "2")
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		a, err := os.ReadFile(filepath.Join(whole, "checkpoint-8", f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(part, "checkpoint-8", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s of the resumed run differs from the uninterrupted one", f)
		}
	}
	ck := filepath.Join(whole, "checkpoint-8")
	st, err := safetensors.Read(filepath.Join(ck, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	scalings, moved := 0, 0
	for _, name := range st.Names() {
		if !strings.HasSuffix(name, ".scaling") {
			continue
		}
		scalings++
		v, _ := st.Get(name).Float64s()
		if len(v) != 1 || math.IsNaN(v[0]) {
			t.Fatalf("%s = %v", name, v)
		}
		if v[0] != 1 {
			moved++
		}
	}
	if scalings == 0 || moved == 0 {
		t.Errorf("%d scaling tensors, %d trained away from 1", scalings, moved)
	}
	sl, err := os.ReadFile(filepath.Join(ck, "sltrain_config.json"))
	if err != nil || !strings.Contains(string(sl), `"trainable_scaling": true`) {
		t.Errorf("sltrain_config.json %s (%v) does not say trainable_scaling", sl, err)
	}
	if out := mustSlc(t, "eval", ck, "--data", corpus, "--eval-batches", "2", "--threads", "2"); !strings.Contains(out, "eval loss") {
		t.Errorf("eval of the checkpoint:\n%s", out)
	}
	mustSlc(t, "export", ck, "-o", filepath.Join(dir, "hf"))
}
