package runtime_test

import (
	"fmt"
	"log"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/version"
)

// A training loop's use of the runtime: load a compiled model, run its train
// program on a batch, and read a parameter back for export. (The data and
// scalar names are the program's slot names; Runtime.Artifact().Program(name)
// lists them.)
func Example() {
	a, err := artifact.ReadFile("model.slc")
	if err != nil {
		log.Fatal(err)
	}
	rt, err := runtime.Load(a, runtime.Options{Threads: 8, Version: version.Version})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()

	batch := make([]int64, 4*256) // token ids, [batch, seq]
	res, err := rt.Run("train", runtime.Inputs{
		Data:    map[string][]int64{"input_ids": batch},
		Scalars: map[string]float64{"lr": 3e-3, "step": 1},
	})
	if err != nil {
		log.Fatal(err)
	}
	loss, _ := res["loss"].Scalar()
	fmt.Printf("loss %.4f\n", loss)

	w, err := rt.State("model.embed_tokens.weight")
	if err != nil {
		log.Fatal(err)
	}
	values, _ := w.Float32s()
	fmt.Println(w.Type, len(values))
}
