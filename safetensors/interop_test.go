package safetensors

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// python returns Debian's python3 with numpy, or skips the test.
func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		t.Skip("no numpy for /usr/bin/python3")
	}
	return py
}

// helperDir is tools/torchref, the independent reader and writer.
func helperDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../tools/torchref")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "safetensors_io.py")); err != nil {
		t.Skip("no tools/torchref/safetensors_io.py")
	}
	return dir
}

// TestReadPythonFile reads a file written by tools/torchref/safetensors_io.py.
func TestReadPythonFile(t *testing.T) {
	py, dir := python(t), helperDir(t)
	path := filepath.Join(t.TempDir(), "py.safetensors")
	script := `
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors_io as st
st.save(sys.argv[2], {
    "w": np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
    "b": np.array([1.0, 0.1, -3.0], dtype=np.float32),
    "h": np.array([0.5, -65504], dtype=np.float16),
    "d": np.array([[np.pi]], dtype=np.float64),
    "i": np.array([0, 1 << 40, -7], dtype=np.int64),
    "j": np.array([5, -5], dtype=np.int32),
    "s": np.array(2.5, dtype=np.float32),
}, dtypes={"b": "BF16"}, metadata={"format": "pt"})
`
	if out, err := exec.Command(py, "-c", script, dir, path).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	for _, c := range []struct {
		name  string
		dtype ir.DType
		shape []int
		want  []float64
	}{
		{"w", ir.F32, []int{2, 3}, []float64{0, 0.25, 0.5, 0.75, 1, 1.25}},
		{"b", ir.BF16, []int{3}, []float64{1, float64(ir.BF16ToFloat32(ir.BF16FromFloat32(0.1))), -3}},
		{"h", ir.F16, []int{2}, []float64{0.5, -65504}},
		{"d", ir.F64, []int{1, 1}, []float64{math.Pi}},
		{"s", ir.F32, nil, []float64{2.5}},
	} {
		x := f.Get(c.name)
		if x == nil {
			t.Fatalf("no tensor %q in %v", c.name, f.Names())
		}
		got, err := x.Float64s()
		if err != nil || x.DType != c.dtype || !ir.ShapeEqual(x.Shape, c.shape) || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v%v %v (%v), want %v%v %v", c.name, x.DType, x.Shape, got, err, c.dtype, c.shape, c.want)
		}
	}
	for name, want := range map[string][]int64{"i": {0, 1 << 40, -7}, "j": {5, -5}} {
		if got, err := f.Get(name).Int64s(); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v (%v), want %v", name, got, err, want)
		}
	}
}

// TestPythonReadsOurFile has the independent reader check a file written here.
func TestPythonReadsOurFile(t *testing.T) {
	py, dir := python(t), helperDir(t)
	path := filepath.Join(t.TempDir(), "go.safetensors")
	f := sample()
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	script := `
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors_io as st
t, dt, meta = st.load_with_dtypes(sys.argv[2])
assert meta == {"format": "pt", "note": '<é & "q">'}, meta
assert list(t) == ["model.embed_tokens.weight", "b", "h", "d", "i", "j", "scalar", "empty"], list(t)
assert dt == {"model.embed_tokens.weight": "F32", "b": "BF16", "h": "F16", "d": "F64", "i": "I64", "j": "I32", "scalar": "F32", "empty": "F32"}, dt
assert t["model.embed_tokens.weight"].shape == (2, 3)
assert t["model.embed_tokens.weight"][0, 2] == 3.5 and np.isinf(t["model.embed_tokens.weight"][1, 1])
assert t["b"].tolist() == [1.0, float(np.float32(0.10009765625)), -3.0], t["b"]
assert t["h"].tolist() == [65504.0, -0.5]
assert t["d"][0, 0] == np.pi
assert t["i"].tolist() == [0, 1 << 40, -7] and t["j"].tolist() == [5, -5]
assert t["scalar"].shape == () and t["scalar"] == 42
assert t["empty"].shape == (0, 4)
print("ok")
`
	out, err := exec.Command(py, "-c", script, dir, path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("python: %v\n%s", err, out)
	}
}
