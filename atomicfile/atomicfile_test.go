package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	if err := WriteBytes(path, 0o644, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(path, 0o600, []byte("second")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "second" {
		t.Fatalf("read %q, %v", got, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	// A failing fill leaves the old file and no temporary behind.
	boom := errors.New("disk full")
	err = Write(path, 0o644, func(w io.Writer) error {
		w.Write([]byte("half of a"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the fill's error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "second" {
		t.Fatalf("the old file was damaged: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftovers: %v", entries)
	}
	// A directory that does not exist is an error, not a panic.
	if err := WriteBytes(filepath.Join(dir, "no", "such", "f"), 0o644, nil); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}
