package runtime

import (
	"bytes"
	"strings"
	"testing"
)

// ReadState gives State's bytes in the caller's buffer, and refuses a
// buffer of another size or an unknown name.
func TestReadState(t *testing.T) {
	r := load(t, testArtifact(t), 1)
	v := make([]float32, 100)
	for i := range v {
		v[i] = float32(i) / 7
	}
	if err := r.SetStateFloat32("b", v); err != nil {
		t.Fatal(err)
	}
	want, _ := r.State("b")
	got := make([]byte, len(want.Data))
	if err := r.ReadState("b", got); err != nil || !bytes.Equal(got, want.Data) {
		t.Errorf("ReadState: %v, bytes equal %v", err, bytes.Equal(got, want.Data))
	}
	if err := r.ReadState("b", got[1:]); err == nil || !strings.Contains(err.Error(), "takes 400 bytes, got a buffer of 399") {
		t.Errorf("short buffer: %v", err)
	}
	if err := r.ReadState("nope", got); err == nil || !strings.Contains(err.Error(), `no state tensor "nope"`) {
		t.Errorf("unknown: %v", err)
	}
}
