package checkpoint_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// A training loop saves with checkpoint.FromRuntime(rt, state) and Save, and
// resumes with Load and checkpoint.ToRuntime(c, rt); here the checkpoint is
// built by hand.
func Example() {
	dir, err := os.MkdirTemp("", "ckpt-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	c := &checkpoint.Checkpoint{
		Model: &safetensors.File{Tensors: []safetensors.Tensor{
			safetensors.FromFloat32s("model.norm.weight", ir.F32, []int{4}, []float32{1, 1, 1, 1}),
		}},
		State:  checkpoint.TrainingState{Step: 1000, TokensSeen: 1000 * 512 * 256, Seed: 42, LR: 3e-3},
		Config: []byte(`{"model_type": "llama", "hidden_size": 4}`),
	}
	path := filepath.Join(dir, "model_1000")
	if err := checkpoint.Save(path, c); err != nil {
		log.Fatal(err)
	}
	back, err := checkpoint.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back)
	// Output: checkpoint at update 1000 (131072000 tokens), 1 model tensors, 0 optimizer tensors
}
