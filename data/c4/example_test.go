package c4_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gitee.com/gidean/conv-linn/data/c4"
)

// Stream two small shards shuffled, stop after three documents, and resume
// from the saved position in a fresh stream.
func ExampleStream() {
	dir, _ := os.MkdirTemp("", "c4-example-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(`{"text": "a0"}`+"\n"+`{"text": "a1"}`+"\n"+`{"text": "a2"}`+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.jsonl"), []byte(`{"text": "b0", "url": "u"}`+"\n"+`{"text": "b1"}`+"\n"), 0o644)
	files, err := c4.Files(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	opt := c4.Options{Shuffle: true, Seed: 42, Buffer: 2, Epochs: 1}
	s, _ := c4.NewStream(files, opt)
	for range 3 {
		d, _ := s.Next()
		fmt.Print(d.Text, " ")
	}
	pos := s.Position()
	s.Close()
	fmt.Printf("| %+v |", pos)

	r, _ := c4.NewStream(files, opt)
	defer r.Close()
	if err := r.Seek(pos); err != nil {
		fmt.Println(err)
		return
	}
	for {
		d, err := r.Next()
		if err == io.EOF {
			break
		}
		fmt.Print(" ", d.Text)
	}
	fmt.Println()
	// Output:
	// a0 a2 a1 | {Epoch:0 Shard:0 File:a.jsonl Doc:3} | b1 b0
}
