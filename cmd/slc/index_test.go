package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// TestResumeInt64IndexCheckpoint: a checkpoint whose sparse indices are
// int64 (an slc before i32 indices wrote them so) resumes exactly as the
// same checkpoint with i32 indices, and one whose index does not fit i32 is
// refused in one line naming it.
func TestResumeInt64IndexCheckpoint(t *testing.T) {
	art := tinyArtifact(t)
	dir := t.TempDir()
	save := filepath.Join(dir, "run")
	mustSlc(t, trainArgs(art, save, "--num-training-steps", "2", "--save-every", "1")...)
	ck, err := checkpoint.Load(filepath.Join(save, "checkpoint-1"))
	if err != nil {
		t.Fatal(err)
	}
	widen := func(to string, set func(name string, v []int64)) string {
		n := 0
		for i, x := range ck.Model.Tensors {
			switch x.DType {
			case ir.I32:
				w, err := x.ConvertInt(ir.I64)
				if err != nil {
					t.Fatal(err)
				}
				if set != nil {
					v, _ := w.Int64s()
					set(x.Name, v)
					w = safetensors.FromInt64s(x.Name, ir.I64, x.Shape, v)
				}
				ck.Model.Tensors[i] = w
				n++
			case ir.I64:
				t.Fatalf("%s saved as int64, want i32", x.Name)
			}
		}
		if n == 0 {
			t.Fatal("no i32 sparse_index in the checkpoint")
		}
		old := filepath.Join(dir, to)
		if err := checkpoint.Save(old, ck); err != nil {
			t.Fatal(err)
		}
		return old
	}
	old := widen("old-checkpoint-1", nil)
	resumed := filepath.Join(dir, "resumed")
	mustSlc(t, "train", "--continue-from", old, "--save-dir", resumed, "--threads", "2")
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		a, b := mustRead(t, filepath.Join(save, "checkpoint-2", f)), mustRead(t, filepath.Join(resumed, "checkpoint-2", f))
		if !bytes.Equal(a, b) {
			t.Errorf("update 2 resumed from int64 indices: %s differs from the run's", f)
		}
	}

	ck, err = checkpoint.Load(filepath.Join(save, "checkpoint-1"))
	if err != nil {
		t.Fatal(err)
	}
	const name = "model.layers.0.self_attn.q_proj.sparse_index"
	bad := widen("bad-checkpoint-1", func(n string, v []int64) {
		if n == name {
			v[len(v)-1] = 1 << 31
		}
	})
	failsWith(t, 1, []string{name, "2147483648", "does not fit i32"}, "train", "--continue-from", bad, "--save-dir", filepath.Join(dir, "bad"), "--threads", "2")
	failsWith(t, 1, []string{name, "does not fit i32"}, "eval", bad, "--data", corpus, "--threads", "2")
}
