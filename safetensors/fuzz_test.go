package safetensors

import (
	"bytes"
	"testing"
)

// FuzzParse checks that Parse never panics on any input and that whatever it
// accepts re-encodes to a file that parses to the same tensors and metadata.
// The committed corpus (testdata/fuzz/FuzzParse) holds valid files of every
// dtype and near-misses of each validation rule.
func FuzzParse(f *testing.F) {
	if data, err := Marshal(sample()); err == nil {
		f.Add(data)
	}
	f.Add(header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		again, err := Marshal(file)
		if err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		back, err := Parse(again)
		if err != nil {
			t.Fatalf("re-parsing a re-encoded file: %v", err)
		}
		if len(back.Tensors) != len(file.Tensors) || len(back.Metadata) != len(file.Metadata) {
			t.Fatalf("round trip changed the file: %d→%d tensors, %d→%d metadata", len(file.Tensors), len(back.Tensors), len(file.Metadata), len(back.Metadata))
		}
		for i, a := range file.Tensors {
			b := back.Tensors[i]
			if a.Name != b.Name || a.DType != b.DType || shapeString(a.Shape) != shapeString(b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("tensor %d changed: %q %v%v → %q %v%v", i, a.Name, a.DType, a.Shape, b.Name, b.DType, b.Shape)
			}
		}
		for k, v := range file.Metadata {
			if back.Metadata[k] != v {
				t.Fatalf("metadata %q changed: %q → %q", k, v, back.Metadata[k])
			}
		}
	})
}
