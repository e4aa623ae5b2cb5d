package checkpoint

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A streamed run's data position is saved as a JSON object in
// data_position, under format_version 2, and read back; a state without one
// stays format 1, and a checkpoint written before the field loads without
// one. A data_position that is not an object is refused on Save and Load.
func TestDataPosition(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "ckpt")
	c := sample(1)
	pos := `{"epoch":2,"shard":1,"file":"c4-train.00001-of-00004.json.gz","doc":17}`
	c.State.DataPosition = json.RawMessage(pos)
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, StateFile))
	if !bytes.Contains(raw, []byte(`"format_version": 2`)) || !bytes.Contains(raw, []byte(`"data_position": {`)) {
		t.Errorf("%s of a streamed run:\n%s", StateFile, raw)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	json.Compact(&b, got.State.DataPosition)
	if b.String() != pos || got.State.Format != 2 {
		t.Errorf("data_position %s (format %d), want %s (format 2)", got.State.DataPosition, got.State.Format, pos)
	}

	c.State.DataPosition = nil
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(filepath.Join(dir, StateFile))
	if !bytes.Contains(raw, []byte(`"format_version": 1`)) || bytes.Contains(raw, []byte("data_position")) {
		t.Errorf("%s of a run in memory:\n%s", StateFile, raw)
	}
	// That state file is also what slc wrote before data_position existed.
	old := string(stripSums(t, raw)) // without checksums: the parser sees the change
	if got, err := Load(dir); err != nil || got.State.DataPosition != nil || got.State.RowIndex != 7 {
		t.Fatalf("a state without data_position: %v", err)
	}

	for _, bad := range []string{`[1]`, `"e0"`, `null`, `3`} {
		c.State.DataPosition = json.RawMessage(bad)
		if err := Save(filepath.Join(parent, "bad"), c); err == nil || !strings.Contains(err.Error(), "data_position") {
			t.Errorf("Save with data_position %s: %v", bad, err)
		}
		st := strings.Replace(old, `"data_epoch"`, `"data_position": `+bad+`, "data_epoch"`, 1)
		os.WriteFile(filepath.Join(dir, StateFile), []byte(st), 0o644)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "data_position") {
			t.Errorf("Load with data_position %s: %v", bad, err)
		}
	}
}
