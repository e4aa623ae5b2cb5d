package ir_test

import (
	"path/filepath"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// llama60m builds the forward graph of the seed's 60M model, the size of module
// slc loads in practice. It lives in package ir_test because frontend imports ir.
func llama60m(tb testing.TB) *ir.Module {
	tb.Helper()
	cfg, err := frontend.ReadLlamaConfig(filepath.Join("..", "testdata", "configs", "llama_60m.json"))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 8, SeqLen: 256})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// forms returns the text and binary forms of m.
func forms(tb testing.TB, m *ir.Module) (text, bin []byte) {
	tb.Helper()
	bin, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return m.MarshalText(), bin
}

func BenchmarkLoadText(b *testing.B) {
	text, _ := forms(b, llama60m(b))
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ir.ParseText(text); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(text)), "file-bytes")
}

func BenchmarkLoadBinary(b *testing.B) {
	_, bin := forms(b, llama60m(b))
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ir.ParseBinary(bin); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(bin)), "file-bytes")
}

func TestBinarySmallerThanText(t *testing.T) {
	m := llama60m(t)
	text, bin := forms(t, m)
	t.Logf("llama_60m forward (%d nodes): text %d bytes, binary %d bytes (%.0f%%)",
		len(m.Graphs[0].Nodes), len(text), len(bin), 100*float64(len(bin))/float64(len(text)))
	if len(bin) >= len(text) {
		t.Errorf("binary form (%d bytes) is not smaller than text (%d bytes)", len(bin), len(text))
	}
	back, err := ir.ParseBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(m) {
		t.Error("llama_60m changed in the binary round trip")
	}
}

// Every bundled config round-trips through both forms, before and after the
// pass pipeline (the compiled module holds every op kind the compiler emits).
func TestBundledConfigsRoundTrip(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "configs", "llama_*.json"))
	if err != nil || len(paths) < 9 {
		t.Fatalf("bundled configs: %v (%d found)", err, len(paths))
	}
	for _, p := range paths {
		cfg, err := frontend.ReadLlamaConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: 2, SeqLen: 16})
		if err != nil {
			t.Fatal(err)
		}
		mods := []*ir.Module{m}
		if filepath.Base(p) == "llama_tiny.json" || filepath.Base(p) == "llama_9m.json" {
			c := m.Clone()
			o := passes.DefaultOptions()
			o.Rank = 8
			if err := passes.Run(&passes.State{Module: c, Options: o}, passes.Pipeline); err != nil {
				t.Fatal(err)
			}
			mods = append(mods, c)
		}
		for _, m := range mods {
			back, err := ir.ParseText(m.MarshalText())
			if err != nil || !back.Equal(m) {
				t.Fatalf("%s: text round trip: %v", p, err)
			}
			bin, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			back, err = ir.ParseBinary(bin)
			if err != nil || !back.Equal(m) {
				t.Fatalf("%s: binary round trip: %v", p, err)
			}
		}
	}
}
