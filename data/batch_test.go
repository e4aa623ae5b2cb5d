package data

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// stream returns n tokens 0, 1, …, n-1, so that a row's first token tells which
// row it is.
func stream(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// rowsOf returns the row numbers of a batch cut from stream(·) with row length L,
// checking that every row is whole and in order.
func rowsOf(t *testing.T, batch []int64, L int) []int {
	t.Helper()
	var rows []int
	for i := 0; i < len(batch); i += L {
		r := int(batch[i]) / L
		for j := range L {
			if batch[i+j] != int64(r*L+j) {
				t.Fatalf("batch %v: row at %d is not row %d", batch, i/L, r)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// TestBatcherOrder pins the batching contract: the rows each Next returns and
// the position after it.
func TestBatcherOrder(t *testing.T) {
	// perm is the contract's per-epoch order, computed here independently.
	perm := func(seed uint64, e, rows int) []int {
		return ir.NewRNG(ir.SeedFor(seed, fmt.Sprintf("data/epoch/%d", e))).Perm(rows)
	}
	for _, c := range []struct {
		name          string
		tokens, L, B  int
		shuffle       bool
		seed          uint64
		want          [][]int    // rows of each batch
		wantPositions []Position // after each batch
	}{
		{"in order", 10, 2, 2, false, 0,
			[][]int{{0, 1}, {2, 3}, {4, 0}, {1, 2}, {3, 4}, {0, 1}},
			[]Position{{0, 2}, {0, 4}, {1, 1}, {1, 3}, {2, 0}, {2, 2}}},
		{"tail dropped", 11, 2, 2, false, 0,
			[][]int{{0, 1}, {2, 3}, {4, 0}},
			[]Position{{0, 2}, {0, 4}, {1, 1}}},
		{"batch larger than the rows", 7, 2, 7, false, 0,
			[][]int{{0, 1, 2, 0, 1, 2, 0}, {1, 2, 0, 1, 2, 0, 1}},
			[]Position{{2, 1}, {4, 2}}},
		{"one row", 5, 5, 2, false, 0,
			[][]int{{0, 0}},
			[]Position{{2, 0}}},
		{"shuffled, pinned literally", 16, 2, 4, true, 1,
			// ir.NewRNG(ir.SeedFor(1, "data/epoch/0")).Perm(8) = [3 4 2 5 0 6 1 7]
			// ir.NewRNG(ir.SeedFor(1, "data/epoch/1")).Perm(8) = [7 5 4 3 2 1 0 6]
			[][]int{{3, 4, 2, 5}, {0, 6, 1, 7}, {7, 5, 4, 3}, {2, 1, 0, 6}},
			[]Position{{0, 4}, {1, 0}, {1, 4}, {2, 0}}},
		{"shuffled, wrapping mid-batch", 15, 3, 3, true, 42,
			[][]int{
				perm(42, 0, 5)[0:3],
				append(perm(42, 0, 5)[3:5:5], perm(42, 1, 5)[0]),
				perm(42, 1, 5)[1:4],
				append(perm(42, 1, 5)[4:5:5], perm(42, 2, 5)[0:2]...),
			},
			[]Position{{0, 3}, {1, 1}, {1, 4}, {2, 2}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := NewBatcher(stream(c.tokens), c.L, c.B, c.shuffle, c.seed)
			if err != nil {
				t.Fatal(err)
			}
			if b.Rows() != c.tokens/c.L || b.RowLen() != c.L || b.Batch() != c.B {
				t.Fatalf("Rows, RowLen, Batch = %d, %d, %d", b.Rows(), b.RowLen(), b.Batch())
			}
			for i, want := range c.want {
				batch := b.Next()
				if len(batch) != c.B*c.L {
					t.Fatalf("batch %d has %d ids, want %d", i, len(batch), c.B*c.L)
				}
				if got := rowsOf(t, batch, c.L); !slices.Equal(got, want) {
					t.Fatalf("batch %d: rows %v, want %v", i, got, want)
				}
				if got := b.Position(); got != c.wantPositions[i] {
					t.Fatalf("after batch %d: position %+v, want %+v", i, got, c.wantPositions[i])
				}
			}
		})
	}
}

func TestBatcherShuffleDependsOnSeedAndEpoch(t *testing.T) {
	const rows = 64
	epochs := func(seed uint64) [][]int {
		b, err := NewBatcher(stream(rows), 1, rows, true, seed)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]int
		for range 3 {
			out = append(out, rowsOf(t, b.Next(), 1))
		}
		return out
	}
	a, again, other := epochs(7), epochs(7), epochs(8)
	for e := range a {
		if !slices.Equal(a[e], again[e]) {
			t.Fatalf("epoch %d differs between two runs with the same seed", e)
		}
		if slices.Equal(a[e], other[e]) {
			t.Errorf("epoch %d is the same for seeds 7 and 8", e)
		}
		if slices.Equal(a[e], stream64(rows)) {
			t.Errorf("epoch %d is not shuffled", e)
		}
		sorted := slices.Sorted(slices.Values(a[e]))
		if !slices.Equal(sorted, stream64(rows)) {
			t.Fatalf("epoch %d is not a permutation: %v", e, a[e])
		}
	}
	if slices.Equal(a[0], a[1]) || slices.Equal(a[1], a[2]) {
		t.Error("consecutive epochs share an order")
	}
	if !slices.Equal(EpochOrder(7, 2, rows), a[2]) {
		t.Error("EpochOrder disagrees with the Batcher")
	}
}

func stream64(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// TestBatcherSeek checks resuming from every position of an uninterrupted run,
// across epoch boundaries, shuffled or not: Seek then Next gives the same
// batches the run gave.
func TestBatcherSeek(t *testing.T) {
	for _, c := range []struct {
		tokens, L, B int
		shuffle      bool
	}{{15, 3, 3, false}, {15, 3, 3, true}, {40, 4, 3, true}, {12, 4, 5, true}} {
		t.Run(fmt.Sprintf("%d/%d/%d/%v", c.tokens, c.L, c.B, c.shuffle), func(t *testing.T) {
			const steps = 12
			run, err := NewBatcher(stream(c.tokens), c.L, c.B, c.shuffle, 3)
			if err != nil {
				t.Fatal(err)
			}
			var positions []Position
			var batches [][]int64
			for range steps {
				positions = append(positions, run.Position())
				batches = append(batches, run.Next())
			}
			for k := range steps {
				// A fresh Batcher, and one already elsewhere (its cached
				// permutation must not leak into the resumed order).
				fresh, _ := NewBatcher(stream(c.tokens), c.L, c.B, c.shuffle, 3)
				used, _ := NewBatcher(stream(c.tokens), c.L, c.B, c.shuffle, 3)
				for range steps - k + 2 {
					used.Next()
				}
				for _, b := range []*Batcher{fresh, used} {
					if err := b.Seek(positions[k]); err != nil {
						t.Fatal(err)
					}
					for j := k; j < steps; j++ {
						if got := b.Next(); !slices.Equal(got, batches[j]) {
							t.Fatalf("resumed at step %d (%+v): batch %d is %v, want %v", k, positions[k], j, got, batches[j])
						}
					}
				}
			}
		})
	}
}

func TestBatcherErrors(t *testing.T) {
	for _, c := range []struct {
		name         string
		tokens, L, B int
		want         string
	}{
		{"no full row", 5, 6, 1, "no full row"},
		{"no tokens", 0, 1, 1, "no full row"},
		{"row length 0", 5, 0, 1, "row length"},
		{"batch 0", 5, 1, 0, "batch size"},
	} {
		if _, err := NewBatcher(stream(c.tokens), c.L, c.B, false, 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	b, err := NewBatcher(stream(10), 2, 2, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Position{{0, 5}, {0, -1}, {-1, 0}, {3, 99}} {
		if err := b.Seek(p); err == nil || !strings.Contains(err.Error(), "5 rows") {
			t.Errorf("Seek(%+v): got %v", p, err)
		}
	}
	if b.Position() != (Position{}) {
		t.Errorf("a failed Seek moved the position to %+v", b.Position())
	}
}

func ExampleBatcher() {
	tokens := []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10} // 5 rows of 2; the tail 10 is dropped
	b, err := NewBatcher(tokens, 2, 2, false, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		fmt.Println(b.Next(), b.Position())
	}
	// Output:
	// [0 1 2 3] {0 2}
	// [4 5 6 7] {0 4}
	// [8 9 0 1] {1 1}
}
