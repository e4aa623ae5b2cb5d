package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"gitee.com/gidean/conv-linn/ir"
)

// Batcher hands out micro-batches of rows in the order the package doc's
// batching contract fixes. It keeps a reference to the tokens (the caller must
// not change them) and allocates only the current epoch's permutation.
type Batcher struct {
	tokens  []int32
	rowLen  int
	batch   int
	rows    int
	shuffle bool
	seed    uint64

	pos       Position
	perm      []int // the row order of epoch permEpoch (shuffle only)
	permEpoch int64

	// Document rows (NewDocumentBatcher): the documents, the pad id, and the
	// last batch's loss mask and non-pad count.
	docs       [][]int32
	pad        int32
	mask       []float32
	tokensLast int64
}

// Position is where a Batcher stands: the epoch and the rows consumed in it,
// always less than Rows(). A checkpoint stores it to resume the data order.
type Position struct {
	Epoch int64
	Index int64 // rows consumed in the current epoch
}

// NewBatcher cuts tokens into rows of rowLen tokens (dropping a shorter tail) and
// serves batch rows per Next call, from position {0, 0}. With shuffle, each
// epoch's row order is a permutation drawn from seed and the epoch number. It
// errors if tokens make no full row; batch may exceed the row count (a batch then
// wraps into later epochs and repeats rows).
func NewBatcher(tokens []int32, rowLen, batch int, shuffle bool, seed uint64) (*Batcher, error) {
	if rowLen < 1 {
		return nil, fmt.Errorf("data: row length must be >= 1, got %d", rowLen)
	}
	if batch < 1 {
		return nil, fmt.Errorf("data: batch size must be >= 1, got %d", batch)
	}
	rows := len(tokens) / rowLen
	if rows < 1 {
		return nil, fmt.Errorf("data: %d tokens make no full row of %d tokens", len(tokens), rowLen)
	}
	return &Batcher{tokens: tokens, rowLen: rowLen, batch: batch, rows: rows, shuffle: shuffle, seed: seed}, nil
}

// Rows returns the number of rows in an epoch.
func (b *Batcher) Rows() int { return b.rows }

// RowLen returns the tokens per row.
func (b *Batcher) RowLen() int { return b.rowLen }

// Batch returns the rows per micro-batch.
func (b *Batcher) Batch() int { return b.batch }

// Position returns the current position: the next Next starts at row Index of
// epoch Epoch's order.
func (b *Batcher) Position() Position { return b.pos }

// Seek moves to a position returned by Position, so that the following Next
// calls give exactly what they gave after it. It errors for a position this
// Batcher cannot have reached (a negative epoch, or an index not below Rows(),
// as when the data changed since the checkpoint).
func (b *Batcher) Seek(p Position) error {
	if p.Epoch < 0 || p.Index < 0 || p.Index >= int64(b.rows) {
		return fmt.Errorf("data: position (epoch %d, row %d) is outside an epoch of %d rows; did the data or the sequence length change since it was saved?", p.Epoch, p.Index, b.rows)
	}
	b.pos = p
	return nil
}

// A Mark is a batcher's position as a checkpoint stores it (the position
// methods of train.Batches): for rows in memory (Batcher), the epoch and the
// rows consumed in it, training_state.json's data_epoch and data_index; for a
// stream (StreamBatcher), the stream's c4.Position as JSON in Stream
// (data_position), Epoch being the stream's epoch and Index 0.
type Mark struct {
	Epoch, Index int64
	Stream       json.RawMessage
}

// Mark returns the position as a checkpoint stores it.
func (b *Batcher) Mark() Mark { return Mark{Epoch: b.pos.Epoch, Index: b.pos.Index} }

// SeekMark moves to a position Mark returned (see Seek). A stream's Mark is
// an error: the run that saved it streamed its data.
func (b *Batcher) SeekMark(m Mark) error {
	if m.Stream != nil {
		return errors.New("data: the checkpoint holds a stream position (data_position): the run streamed its data, and this one holds it in memory")
	}
	return b.Seek(Position{Epoch: m.Epoch, Index: m.Index})
}

// Err is nil: rows in memory cannot fail to come (a StreamBatcher's can).
func (b *Batcher) Err() error { return nil }

// Next returns the next micro-batch, batch·rowLen ids, row-major, and advances
// the position (for document rows, also LossMask and Tokens).
func (b *Batcher) Next() []int64 {
	out := make([]int64, b.batch*b.rowLen)
	b.tokensLast = int64(len(out))
	if b.docs != nil {
		b.mask, b.tokensLast = make([]float32, b.batch*(b.rowLen-1)), 0
	}
	for i := range b.batch {
		r := b.row(b.pos.Epoch, int(b.pos.Index))
		dst := out[i*b.rowLen : (i+1)*b.rowLen]
		if b.docs != nil {
			b.tokensLast += fillDocument(b.docs[r], b.pad, dst, b.mask[i*(b.rowLen-1):(i+1)*(b.rowLen-1)])
		} else {
			for j, v := range b.tokens[r*b.rowLen : (r+1)*b.rowLen] {
				dst[j] = int64(v)
			}
		}
		if b.pos.Index++; b.pos.Index == int64(b.rows) {
			b.pos = Position{Epoch: b.pos.Epoch + 1}
		}
	}
	return out
}

// row returns the row at index i of epoch e's order.
func (b *Batcher) row(e int64, i int) int {
	if !b.shuffle {
		return i
	}
	if b.perm == nil || b.permEpoch != e {
		b.perm = EpochOrder(b.seed, e, b.rows)
		b.permEpoch = e
	}
	return b.perm[i]
}

// EpochOrder returns the shuffled row order of epoch e for a stream of rows
// rows: ir.NewRNG(ir.SeedFor(seed, "data/epoch/<e>")).Perm(rows).
func EpochOrder(seed uint64, e int64, rows int) []int {
	return ir.NewRNG(ir.SeedFor(seed, "data/epoch/"+strconv.FormatInt(e, 10))).Perm(rows)
}
