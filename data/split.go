package data

import (
	"fmt"
	"math"
)

// Split holds out the end of a token stream for evaluation, so that evaluation
// rows are never trained on. The stream is cut into rows of rowLen tokens (a
// shorter tail is dropped, as the Batcher drops it); with fraction f the last
// ⌈f·rows⌉ rows, at least one, are eval and the rows before them train. f·rows
// within a relative 1e-9 of an integer counts as that integer, so 0.3 of 10
// rows is 3, not 4 from rounding. Both results share tokens' memory, with their
// capacity cut so that appending to train cannot overwrite eval. Split errors if
// f is not in (0, 1) or either side would be empty.
func Split(tokens []int32, rowLen int, fraction float64) (train, eval []int32, err error) {
	if rowLen < 1 {
		return nil, nil, fmt.Errorf("data: row length must be >= 1, got %d", rowLen)
	}
	if !(fraction > 0 && fraction < 1) {
		return nil, nil, fmt.Errorf("data: eval fraction must be in (0, 1), got %v", fraction)
	}
	rows := len(tokens) / rowLen
	x := fraction * float64(rows)
	n := math.Ceil(x)
	if r := math.Round(x); math.Abs(x-r) <= 1e-9*math.Max(1, x) {
		n = r
	}
	held := max(int(n), 1)
	if rows-held < 1 {
		return nil, nil, fmt.Errorf("data: %d tokens make %d rows of %d; holding out %d for eval (fraction %v) leaves none to train on", len(tokens), rows, rowLen, held, fraction)
	}
	cut := (rows - held) * rowLen
	end := rows * rowLen
	return tokens[:cut:cut], tokens[cut:end:end], nil
}
