package frontend

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseLlamaConfig checks that no input makes the parser panic, that every
// error is one line, and that every accepted config validates, keeps its bytes
// and builds a verified graph at the smallest shapes. The seed corpus in
// testdata/fuzz/FuzzParseLlamaConfig holds the bundled configs and broken ones;
// `go test` runs it as an ordinary test.
func FuzzParseLlamaConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseLlamaConfig(data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("config returned with error %v", err)
			}
			if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		if !bytes.Equal(cfg.Raw, data) {
			t.Fatal("Raw differs from the input")
		}
		if cfg.NumHiddenLayers > 64 {
			return // building is linear in the layers; keep each input fast
		}
		m, err := BuildLlama(cfg, Options{BatchSize: 1, SeqLen: 2})
		if err != nil {
			t.Fatalf("valid config does not build: %v", err)
		}
		if err := m.Verify(); err != nil {
			t.Fatalf("built module does not verify: %v", err)
		}
	})
}
