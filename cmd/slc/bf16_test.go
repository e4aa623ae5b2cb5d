package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// The seed's pure bf16 and slc's bf16-mixed through slc train: the
// checkpoint's tensors are bf16 (f32 for mixed, whose masters and moments
// are f32), and a run resumed from its middle checkpoint ends bit-identical
// to an uninterrupted one, as in f32. A mixed run is not the f32 run, and
// resuming it as float32 is refused.
func TestTrainBF16ResumesBitIdentical(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	for _, c := range []struct {
		dtype, label string
		stored       ir.DType
	}{{"bfloat16", "bf16", ir.BF16}, {"bf16-mixed", "bf16-mixed", ir.F32}} {
		t.Run(c.dtype, func(t *testing.T) {
			dir := t.TempDir()
			args := func(save, dtype string) []string {
				return trainArgs(configBytes, save, "--dtype", dtype, "--num-training-steps", "4", "--save-every", "2")
			}
			whole, part := filepath.Join(dir, "whole"), filepath.Join(dir, "part")
			out := mustSlc(t, args(whole, c.dtype)...)
			if !strings.Contains(out, "seed 0, "+c.label+")") {
				t.Errorf("train output does not say %s:\n%s", c.label, out)
			}
			mustSlc(t, args(part, c.dtype)...)
			if err := os.RemoveAll(filepath.Join(part, "checkpoint-4")); err != nil {
				t.Fatal(err)
			}
			mustSlc(t, "train", "--continue-from", filepath.Join(part, "checkpoint-2"), "--threads", "2")
			for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
				a, err := os.ReadFile(filepath.Join(whole, "checkpoint-4", f))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(part, "checkpoint-4", f))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Errorf("%s of the resumed run differs from the uninterrupted one", f)
				}
			}
			st, err := safetensors.Read(filepath.Join(whole, "checkpoint-4", "optimizer.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range st.Names() {
				if d := st.Get(name).DType; d != c.stored {
					t.Errorf("optimizer state %s is %v, want %v", name, d, c.stored)
				}
			}
			if c.dtype != "bf16-mixed" {
				return
			}
			f32 := filepath.Join(dir, "f32")
			mustSlc(t, args(f32, "float32")...)
			a, _ := os.ReadFile(filepath.Join(whole, "checkpoint-4", "model.safetensors"))
			b, _ := os.ReadFile(filepath.Join(f32, "checkpoint-4", "model.safetensors"))
			if bytes.Equal(a, b) {
				t.Error("the bf16-mixed run's weights are the float32 run's")
			}
			_, stderr, code := slc(t, "train", "--continue-from", filepath.Join(part, "checkpoint-2"), "--dtype", "float32")
			if code != 2 || !strings.Contains(stderr, "--dtype float32") || !strings.Contains(stderr, "slc export") {
				t.Errorf("resuming bf16-mixed as float32: exit %d, stderr %q; want a usage error with the export hint", code, stderr)
			}
		})
	}
}
