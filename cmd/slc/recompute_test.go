package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTrainActivationCheckpointing trains the tiny model three updates with
// and without --activation-checkpointing (the seed's spelling) in f32, bf16
// and bf16-mixed: the losses, gradient norms, weights and optimizer states
// are bit-identical, and slc compile --explain says what was recomputed.
func TestTrainActivationCheckpointing(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	dir := t.TempDir()
	numbers := regexp.MustCompile(`"(loss|grad_norm|eval_loss)": [^,}]*`)
	for _, dtype := range []string{"float32", "bfloat16", "bf16-mixed"} {
		t.Run(dtype, func(t *testing.T) {
			run := func(name string, extra ...string) string {
				save := filepath.Join(dir, dtype+name)
				mustSlc(t, trainArgs(configBytes, save, append([]string{"--dtype", dtype, "--num-training-steps", "3", "--save-every", "3", "--grad-clipping", "1", "--weight-decay", "0.1"}, extra...)...)...)
				return save
			}
			ref, rc := run("ref"), run("rc", "--activation_checkpointing")
			read := func(p string) []byte {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
				if !bytes.Equal(read(filepath.Join(ref, "checkpoint-3", f)), read(filepath.Join(rc, "checkpoint-3", f))) {
					t.Errorf("%s after 3 updates differs with --activation-checkpointing", f)
				}
			}
			want := numbers.FindAllString(string(read(filepath.Join(ref, "metrics.jsonl"))), -1)
			got := numbers.FindAllString(string(read(filepath.Join(rc, "metrics.jsonl"))), -1)
			if len(want) < 6 || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("metrics with --activation-checkpointing:\n%s\nwithout:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
	for _, flag := range [][]string{{"--activation_checkpointing"}, {"--memory-budget", "8GB"}} {
		_, stderr, code := slc(t, trainArgs(tinyArtifact(t), filepath.Join(dir, "art"), flag...)...)
		name := strings.ReplaceAll(flag[0], "_", "-")
		if code != 2 || !strings.Contains(stderr, "flag "+name+": ") || !strings.Contains(stderr, "is a compiled artifact") {
			t.Errorf("%v on an artifact compiled without it: exit %d, %q", flag, code, stderr)
		}
	}
	out := mustSlc(t, "compile", configBytes, "--batch-size", "4", "--max-length", "32", "--rank", "4", "--activation-checkpointing", "--explain")
	if !strings.Contains(out, "recompute: train_step recomputes") || !strings.Contains(out, "of 2 decoder layers") {
		t.Errorf("compile --explain does not report the recomputation:\n%s", out)
	}
}
