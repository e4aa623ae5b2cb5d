package generate

import (
	"bufio"
	"bytes"
	"testing"
)

// At temperature 0 the sampler takes the argmax; with top-k 1 any
// temperature does too; with all ids allowed, every draw is one of them.
func TestSampler(t *testing.T) {
	logits := []float32{0.1, 2, -1, 1.9}
	if got := NewSampler(0, 0, 1).Next(logits); got != 1 {
		t.Errorf("argmax: %d, want 1", got)
	}
	s := NewSampler(5, 1, 7)
	for range 20 {
		if got := s.Next(logits); got != 1 {
			t.Fatalf("top-k 1: %d, want 1", got)
		}
	}
	seen := map[int]bool{}
	s = NewSampler(100, 0, 3)
	for range 200 {
		seen[s.Next(logits)] = true
	}
	if len(seen) != len(logits) {
		t.Errorf("at a high temperature the draws cover %d of %d ids", len(seen), len(logits))
	}
}

// Byte tokens print as text: valid UTF-8 as it is, control bytes, broken
// sequences and ids past a byte as U+FFFD.
func TestTextWriter(t *testing.T) {
	var b bytes.Buffer
	tw := &textWriter{w: bufio.NewWriter(&b)}
	for _, id := range []int{'h', 0xc3, 0xa9, 0x1b, '\n', 300, 0xe2, 0x82} {
		tw.token(id)
	}
	tw.end()
	tw.w.Flush()
	if want := "hé\uFFFD\n\uFFFD\uFFFD\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
