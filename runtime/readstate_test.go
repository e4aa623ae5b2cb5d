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

// StateView on the CPU is the state tensor itself: its bytes equal State's,
// a later SetState shows through it (no copy), and an unknown name is refused.
func TestStateView(t *testing.T) {
	r := load(t, testArtifact(t), 1)
	v := make([]float32, 100)
	for i := range v {
		v[i] = float32(i) / 7
	}
	if err := r.SetStateFloat32("b", v); err != nil {
		t.Fatal(err)
	}
	want, _ := r.State("b")
	view, ok, err := r.StateView("b")
	if err != nil || !ok || !bytes.Equal(view, want.Data) {
		t.Fatalf("StateView: ok %v, %v, bytes equal %v", ok, err, bytes.Equal(view, want.Data))
	}
	v[3] = 42
	if err := r.SetStateFloat32("b", v); err != nil {
		t.Fatal(err)
	}
	now, _ := r.State("b")
	if !bytes.Equal(view, now.Data) {
		t.Error("the view is a copy: it misses a later SetState")
	}
	if _, _, err := r.StateView("nope"); err == nil || !strings.Contains(err.Error(), `no state tensor "nope"`) {
		t.Errorf("unknown: %v", err)
	}
}
