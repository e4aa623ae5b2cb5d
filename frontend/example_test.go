package frontend_test

import (
	"fmt"
	"log"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
)

// Build the forward program of the tiny test model and count its parameters.
func ExampleBuildLlama() {
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		log.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 16, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Graph("forward").NumElements(ir.Param), "parameters")
	// Output: 5456 parameters
}
