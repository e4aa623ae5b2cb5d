package main

import (
	"encoding/csv"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// denseExport writes an HF-style export of a full-rank two-block model with
// d 4 (every projection 4 × 4, the identity times its block + 1) and returns
// its directory.
func denseExport(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &safetensors.File{}
	for b := range 2 {
		for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			w := make([]float32, 16)
			for i := range 4 {
				w[i*4+i] = float32(b + 1)
			}
			f.Tensors = append(f.Tensors, safetensors.FromFloat32s("model.layers."+strconv.Itoa(b)+"."+m+".weight", ir.F32, []int{4, 4}, w))
		}
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "llama", "hidden_size": 4}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAnalyzeBadInput(t *testing.T) {
	full := denseExport(t)
	tmp := t.TempDir()
	corrupt := filepath.Join(tmp, "corrupt")
	os.Mkdir(corrupt, 0o755)
	os.WriteFile(filepath.Join(corrupt, "training_state.json"), []byte(`{"update_step": `), 0o644)
	os.WriteFile(filepath.Join(tmp, "a-file"), nil, 0o644)
	out := filepath.Join(tmp, "out")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no checkpoint", []string{"analyze", "-o", out}, exitUsage, "slc: missing CKPT argument (run 'slc analyze --help')"},
		{"no output", []string{"analyze", full}, exitUsage, "slc: missing -o DIR"},
		{"labels", []string{"analyze", full, full, "--label", "a", "-o", out}, exitUsage, "slc: 1 --label for 2 CKPTs"},
		{"negative layer", []string{"analyze", full, "--layer", "-1", "-o", out}, exitUsage, "slc: flag --layer: want a block number >= 0, got -1"},
		{"absent layer", []string{"analyze", full, "--layer", "7", "-o", out}, exitUsage, "has no block 7 (its blocks: 0–1)"},
		{"missing", []string{"analyze", filepath.Join(tmp, "nothing"), "-o", out}, exitFailure, "nothing: no such file or directory"},
		{"not a checkpoint", []string{"analyze", tmp, "-o", out}, exitFailure, "neither an slc checkpoint (no training_state.json) nor an export (no model.safetensors)"},
		{"corrupt", []string{"analyze", corrupt, "-o", out}, exitFailure, filepath.Join(corrupt, "training_state.json") + ": not valid JSON"},
		{"unwritable output", []string{"analyze", full, "-o", filepath.Join(tmp, "a-file", "out")}, exitFailure, "a-file/out: cannot write there: not a directory"},
		{"foreign output", []string{"analyze", full, "-o", corrupt}, exitFailure, `holds "training_state.json", which is not an output of slc analyze`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := slc(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "slc: ") || stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit %d and one line with %q", code, stderr, stdout, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed analyze wrote %s", out)
	}
	// A full-rank model is analyzed, and said to be one.
	stdout, stderr, code := slc(t, "analyze", full, "-o", out)
	if code != 0 || !strings.HasPrefix(stderr, "slc: "+full+": not SLTrain (an HF export without lora_A/lora_B/sparse_value): only the spectra of its dense weights W\n") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "full: "+full+", an HF export (full-rank), 14 layers") || !strings.Contains(stdout, "Wrote "+out+": spectrum.csv, summary.csv, spectrum.png, spectrum_tail.png (figures of block 1, tail from index 1)") {
		t.Errorf("stdout:\n%s", stdout)
	}
	// The identity times 2 in block 1: four singular values 2.
	rows := readCSV(t, filepath.Join(out, "spectrum.csv"))
	n := 0
	for _, r := range rows[1:] {
		if r[1] == "model.layers.1.mlp.up_proj" {
			if r[2] != "W" || r[4] != "2" {
				t.Errorf("row %v, want W values 2", r)
			}
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d values of model.layers.1.mlp.up_proj, want 4", n)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// numpySpectra reads an slc checkpoint's model.safetensors with a small
// parser of its own, forms L = B·A·(lora_alpha/r), S and W = L + S of one
// layer in float64 and prints numpy's singular values of each, one
// "component index value" per line.
const numpySpectra = `
import json, struct, sys
import numpy as np
ckpt, layer = sys.argv[1], sys.argv[2]
raw = open(ckpt + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
def tensor(name):
    e = header[name]
    dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}[e["dtype"]]
    a, b = e["data_offsets"]
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(e["shape"]).astype(np.float64 if dt in (np.float32, np.float64) else np.int64)
sl = json.load(open(ckpt + "/sltrain_config.json"))
A, B = tensor(layer + ".lora_A"), tensor(layer + ".lora_B")
out, inn = B.shape[0], A.shape[1]
L = B @ A * (sl["lora_alpha"] / sl["r"])
S = np.zeros(out * inn)
S[tensor(layer + ".sparse_index")] = tensor(layer + ".sparse_value")
S = S.reshape(out, inn)
for name, m in (("L", L), ("S", S), ("L+S", L + S)):
    for i, v in enumerate(np.linalg.svd(m, compute_uv=False)):
        print(name, i + 1, repr(float(v)))
`

// The spectra of a real checkpoint's layer agree with numpy's SVD to 1e-10
// relative: every value above 1e-12·σ₁ of its matrix (below that both are
// zero up to rounding: S has empty rows and columns, L past its rank r).
func TestAnalyzeMatchesNumpy(t *testing.T) {
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		t.Skip("/usr/bin/python3 has no numpy")
	}
	art := tinyArtifact(t)
	save := filepath.Join(t.TempDir(), "run")
	mustSlc(t, trainArgs(art, save, "--num-training-steps", "10", "--lr", "1e-2", "--save-every", "0", "--eval-every", "0")...)
	out := filepath.Join(t.TempDir(), "spectrum")
	stdout, stderr, code := slc(t, "analyze", save, "-o", out, "--threads", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "run: "+filepath.Join(save, "latest")+", an slc checkpoint (SLTrain r 4, scale ") {
		t.Errorf("stdout:\n%s", stdout)
	}
	const layer = "model.layers.1.mlp.down_proj" // 16 × 24
	got := map[string][]float64{}
	for _, r := range readCSV(t, filepath.Join(out, "spectrum.csv"))[1:] {
		if r[1] == layer {
			v, err := strconv.ParseFloat(r[4], 64)
			if err != nil {
				t.Fatal(err)
			}
			got[r[2]] = append(got[r[2]], v)
		}
	}
	py := exec.Command("/usr/bin/python3", "-c", numpySpectra, filepath.Join(save, "latest"), layer)
	py.Stderr = os.Stderr
	text, err := py.Output()
	if err != nil {
		t.Fatalf("numpy: %v", err)
	}
	want := map[string][]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		want[f[0]] = append(want[f[0]], v)
	}
	if len(got["L"]) != 4 || len(got["S"]) != 16 || len(got["L+S"]) != 16 || len(want["L+S"]) != 16 {
		t.Fatalf("%d L, %d S, %d L+S values; numpy %d L+S", len(got["L"]), len(got["S"]), len(got["L+S"]), len(want["L+S"]))
	}
	if got["L"][0] == 0 {
		t.Fatal("L is zero after training: the run did not move B")
	}
	for _, c := range []string{"L", "S", "L+S"} {
		w := want[c]
		for i, g := range got[c] {
			zero := 1e-12 * w[0]
			switch {
			case w[i] <= zero:
				if g > zero {
					t.Errorf("%s value %d: %.17g, numpy %.3g (zero up to rounding)", c, i+1, g, w[i])
				}
			case math.Abs(g-w[i]) > 1e-10*w[i]:
				t.Errorf("%s value %d: %.17g, numpy %.17g (relative difference %.2g)", c, i+1, g, w[i], math.Abs(g-w[i])/w[i])
			}
		}
	}
}
