package checkpoint

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// readerFake is a fakeRuntime with ReadState, the runtime's copy into the
// caller's buffer; it counts the calls.
type readerFake struct {
	*fakeRuntime
	reads int
}

func (f *readerFake) ReadState(name string, dst []byte) error {
	t, ok := f.state[name]
	if !ok || len(dst) != len(t.Data) {
		return fmt.Errorf("bad ReadState %q", name)
	}
	f.reads++
	copy(dst, t.Data)
	return nil
}

// A checkpoint saved as it streams from the runtime (through ReadState, or
// State for a runtime without it) is the same bytes, file for file, as one
// saved from the copies FromRuntime makes, and loads back the same.
func TestStreamFromRuntimeSavesTheSameFiles(t *testing.T) {
	want := t.TempDir()
	c, err := FromRuntime(newFake(true, 3), TrainingState{Step: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := Save(want, c); err != nil {
		t.Fatal(err)
	}
	reader := &readerFake{fakeRuntime: newFake(true, 3)}
	for _, tc := range []struct {
		name string
		rt   Runtime
	}{{"ReadState", reader}, {"State", newFake(true, 3)}} {
		dir := filepath.Join(t.TempDir(), "ckpt")
		s, err := StreamFromRuntime(tc.rt, TrainingState{Step: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range append(s.Model.Tensors, s.Optimizer.Tensors...) {
			if tn.Data != nil {
				t.Errorf("%s: streamed tensor %s holds a copy", tc.name, tn.Name)
			}
		}
		if err := Save(dir, s); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, f := range knownFiles {
			a, errA := os.ReadFile(filepath.Join(want, f))
			b, errB := os.ReadFile(filepath.Join(dir, f))
			if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) {
				t.Errorf("%s: %s differs from the copied checkpoint's (%v, %v)", tc.name, f, errA, errB)
			}
		}
		if _, err := Load(dir); err != nil {
			t.Errorf("%s: Load: %v", tc.name, err)
		}
	}
	if n := len(c.Model.Tensors) + len(c.Optimizer.Tensors); reader.reads != n {
		t.Errorf("ReadState called %d times for %d tensors", reader.reads, n)
	}
}

// A runtime that fails to give a tensor fails the Save, naming it, and leaves
// no checkpoint.
func TestStreamFromRuntimeReadError(t *testing.T) {
	rt := &readerFake{fakeRuntime: newFake(true, 1)}
	s, err := StreamFromRuntime(rt, TrainingState{})
	if err != nil {
		t.Fatal(err)
	}
	delete(rt.state, "z.weight")
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Save(dir, s); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`"z.weight"`)) {
		t.Errorf("Save with a failing read = %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a failed Save left %s (%v)", dir, err)
	}
}
