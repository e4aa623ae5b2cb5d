package c4

import (
	"bufio"
	"flag"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

var memData = flag.String("c4.data", "", "stream the shards in `DIR` (e.g. written by internal/c4synth) in TestStreamMemory instead of 16 MiB of test shards")

// TestStreamMemory streams shards with shuffling and checks that the heap in
// use stays small whatever the shards' size: a read buffer, a decompressor
// and the shuffle buffer's documents. With -c4.data it streams a directory of
// shards (a gigabyte, say) and logs the figures:
//
//	go run ./data/c4/internal/c4synth -o /tmp/c4 -size 1G
//	go test ./data/c4 -run TestStreamMemory -v -c4.data /tmp/c4
func TestStreamMemory(t *testing.T) {
	dir := *memData
	if dir == "" {
		dir = t.TempDir()
		if _, err := WriteSynthetic(dir, Synthetic{Corpus: corpus(t), Shards: 4, Bytes: 4 << 20, Level: 1}); err != nil {
			t.Fatal(err)
		}
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	s := newStream(t, files, Options{Shuffle: true, Seed: 1, Epochs: 1})
	var docs, bytes int64
	var peakHeap, peakSys uint64
	start := time.Now()
	for {
		d, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		docs++
		bytes += int64(len(d.Text))
		if docs%1000 == 0 {
			runtime.ReadMemStats(&ms)
			peakHeap, peakSys = max(peakHeap, ms.HeapInuse), max(peakSys, ms.Sys)
		}
	}
	sec := time.Since(start).Seconds()
	t.Logf("%d shards, %d documents, %.1f MiB of text in %.1f s (%.0f MB/s of text)", len(files), docs, float64(bytes)/(1<<20), sec, float64(bytes)/sec/1e6)
	t.Logf("peak HeapInuse %.1f MiB (%.1f MiB before streaming), peak Sys %.1f MiB, VmHWM %s", float64(peakHeap)/(1<<20), float64(base)/(1<<20), float64(peakSys)/(1<<20), vmHWM())
	// 1000 buffered documents of about 2 KB, a 64 KiB line buffer and gzip's
	// state; the garbage collector lets the heap grow to about twice what is
	// live (GOGC=100).
	if limit := base + 16<<20; peakHeap > limit {
		t.Errorf("peak HeapInuse %d bytes, want under %d", peakHeap, limit)
	}
}

// vmHWM returns the process's peak resident set size, from /proc.
func vmHWM() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// BenchmarkShard reads a shard of synthetic documents: decompression, line
// splitting and the text field's decoding.
func BenchmarkShard(b *testing.B) {
	dir := b.TempDir()
	paths, err := WriteSynthetic(dir, Synthetic{Corpus: corpus(b), Bytes: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for b.Loop() {
		s, err := OpenShard(paths[0], 0)
		if err != nil {
			b.Fatal(err)
		}
		for {
			d, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += int64(len(d.Text))
		}
		s.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds()/1e6, "MB/s")
}
