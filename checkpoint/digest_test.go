package checkpoint

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stripSums returns a state file's text without its checksums, as an slc
// older than them wrote it.
func stripSums(t *testing.T, text []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(text, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "sha256")
	delete(m, "state_sha256")
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// unseal rewrites dir's state file without checksums.
func unseal(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, StateFile)
	text, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, stripSums(t, text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChecksumsCatchEveryFlip flips one bit of every byte of every file of
// a small checkpoint in turn: Load must refuse each one with an error naming
// the file, and never return weights.
func TestChecksumsCatchEveryFlip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := Save(dir, sample(1)); err != nil {
		t.Fatal(err)
	}
	ck, err := Load(dir)
	if err != nil || ck.Unverified {
		t.Fatalf("Load of a fresh checkpoint: %v (unverified %v)", err, ck != nil && ck.Unverified)
	}
	names := entries(t, dir)
	if len(ck.State.Files) != len(names)-1 {
		t.Errorf("state lists %d checksums for %d other files", len(ck.State.Files), len(names)-1)
	}
	flips := 0
	for _, name := range names {
		p := filepath.Join(dir, name)
		orig, _ := os.ReadFile(p)
		for i := range orig {
			buf := bytes.Clone(orig)
			buf[i] ^= 1 << (i % 8)
			os.WriteFile(p, buf, 0o644)
			_, err := Load(dir)
			if err == nil {
				t.Fatalf("%s: byte %d flipped: loaded", name, i)
			}
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("%s: byte %d flipped: %v does not name the file", name, i, err)
			}
			flips++
		}
		os.WriteFile(p, orig, 0o644)
	}
	t.Logf("%d flips refused", flips)
	if _, err := Load(dir); err != nil {
		t.Fatalf("restored checkpoint: %v", err)
	}

	// A file the checksums list must be there; a file they do not list is refused.
	os.Remove(filepath.Join(dir, SLTrainFile))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("listed file removed: %v", err)
	}
	if err := Save(dir, sample(1)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ONNXFile), []byte("onnx"), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not in the checkpoint's checksums") {
		t.Errorf("unlisted file added: %v", err)
	}
	os.Remove(filepath.Join(dir, ONNXFile))

	// Written before checksums: loads, marked unverified.
	unseal(t, dir)
	ck, err = Load(dir)
	if err != nil || !ck.Unverified {
		t.Errorf("checkpoint without checksums: %v (unverified %v)", err, ck != nil && ck.Unverified)
	}
	// Saving it again seals it.
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	if ck, err = Load(dir); err != nil || ck.Unverified {
		t.Errorf("re-saved checkpoint: %v", err)
	}
}

// FuzzLoadFlip flips bit bit of byte pos of file file of a small checkpoint.
// Sealed (with checksums), Load must refuse every flip; unsealed (as an slc
// before checksums wrote it), the parsers behind the checksums see the flip
// and must fail cleanly or load, never panic.
func FuzzLoadFlip(f *testing.F) {
	f.Add(uint8(0), 10, uint8(1), true)
	f.Add(uint8(1), 200, uint8(7), false)
	f.Add(uint8(4), 3, uint8(0), false)
	f.Fuzz(func(t *testing.T, file uint8, pos int, bit uint8, sealed bool) {
		dir := filepath.Join(t.TempDir(), "ckpt")
		if err := Save(dir, sample(1)); err != nil {
			t.Fatal(err)
		}
		if !sealed {
			unseal(t, dir)
		}
		names := entries(t, dir)
		p := filepath.Join(dir, names[int(file)%len(names)])
		data, _ := os.ReadFile(p)
		if len(data) == 0 || pos < 0 {
			return
		}
		data[pos%len(data)] ^= 1 << (bit % 8)
		os.WriteFile(p, data, 0o644)
		if _, err := Load(dir); err == nil && sealed {
			t.Fatalf("%s: a flipped bit loaded", p)
		}
	})
}
