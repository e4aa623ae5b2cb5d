package data

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		name               string
		tokens, L          int
		f                  float64
		trainEnd, evalRows int
	}{
		{"ceil of 1.1 rows", 23, 2, 0.1, 18, 2},
		{"0.3 of 10 rows is 3", 20, 2, 0.3, 14, 3},
		{"0.7 of 10 rows is 7", 10, 1, 0.7, 3, 7},
		{"at least one row", 23, 2, 1e-12, 20, 1},
		{"ceil of 0.11 rows", 22, 2, 0.01, 20, 1},
		{"half of 2 rows", 4, 2, 0.5, 2, 1},
		{"nearly all", 100, 10, 0.95, 0, 0}, // ⌈9.5⌉ = 10 leaves none: error
	} {
		t.Run(c.name, func(t *testing.T) {
			tokens := stream(c.tokens)
			train, eval, err := Split(tokens, c.L, c.f)
			if c.evalRows == 0 {
				if err == nil || !strings.Contains(err.Error(), "none to train on") {
					t.Fatalf("got %v, want an error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			evalEnd := c.trainEnd + c.evalRows*c.L
			if !slices.Equal(train, tokens[:c.trainEnd]) || !slices.Equal(eval, tokens[c.trainEnd:evalEnd]) {
				t.Fatalf("train %v, eval %v; want the split at %d, eval up to %d", train, eval, c.trainEnd, evalEnd)
			}
			// Appending to train must not overwrite eval.
			_ = append(train, -1)
			if eval[0] != int32(c.trainEnd) {
				t.Fatal("appending to train changed eval")
			}
		})
	}
}

func TestSplitErrors(t *testing.T) {
	for _, c := range []struct {
		name      string
		tokens, L int
		f         float64
		want      string
	}{
		{"fraction 0", 10, 1, 0, "(0, 1)"},
		{"fraction 1", 10, 1, 1, "(0, 1)"},
		{"negative", 10, 1, -0.1, "(0, 1)"},
		{"NaN", 10, 1, math.NaN(), "(0, 1)"},
		{"one row", 3, 2, 0.5, "none to train on"},
		{"no row", 1, 2, 0.5, "none to train on"},
		{"row length 0", 10, 0, 0.5, "row length"},
	} {
		if _, _, err := Split(stream(c.tokens), c.L, c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
