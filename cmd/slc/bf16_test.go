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

// The seed's pure bf16 through slc train: the checkpoint's tensors are bf16,
// and a run resumed from its middle checkpoint ends bit-identical to an
// uninterrupted one, as in f32.
func TestTrainBF16ResumesBitIdentical(t *testing.T) {
	tinyArtifact(t) // skips without a C compiler
	dir := t.TempDir()
	args := func(save string) []string {
		return trainArgs(configBytes, save, "--dtype", "bfloat16", "--num-training-steps", "4", "--save-every", "2")
	}
	whole, part := filepath.Join(dir, "whole"), filepath.Join(dir, "part")
	out := mustSlc(t, args(whole)...)
	if !strings.Contains(out, "seed 0, bf16)") {
		t.Errorf("train output does not say bf16:\n%s", out)
	}
	mustSlc(t, args(part)...)
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
		if d := st.Get(name).DType; d != ir.BF16 {
			t.Errorf("optimizer state %s is %v, want bf16", name, d)
		}
	}
}
