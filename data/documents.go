package data

import (
	"fmt"
	"math"
)

// Document rows (slc train --rows documents) are the seed's:
// PreprocessedIterableDataset with tokenizer(text, max_length=L,
// truncation=True, padding="max_length"). Each row is one document — its
// ids, the tokenizer's end-of-text id last — truncated to L tokens (a long
// document loses its end-of-text id with the rest) and right-padded with the
// pad id. The loss ignores the positions whose label is the pad id (the
// seed's labels of −100), so a micro-batch's loss is the mean over its real
// next-token predictions, and the tokens seen are the ids that are not pad.

// Documents cuts a token stream into documents: each ends with an eos id
// (kept), and a tail without one is the last document. This is how Load's
// stream separates documents (LoadOptions.Separator after each text
// document) and how tokenizer-made .bin shards do (each document's ids, then
// the end-of-text id).
func Documents(tokens []int32, eos int32) [][]int32 {
	var docs [][]int32
	start := 0
	for i, t := range tokens {
		if t == eos {
			docs = append(docs, tokens[start:i+1:i+1])
			start = i + 1
		}
	}
	if start < len(tokens) {
		docs = append(docs, tokens[start:len(tokens):len(tokens)])
	}
	return docs
}

// SplitDocuments holds out the last ⌈fraction·n⌉ documents (at least one)
// for evaluation, as Split holds out rows; fraction·n within a relative 1e-9
// of an integer counts as that integer.
func SplitDocuments(docs [][]int32, fraction float64) (train, eval [][]int32, err error) {
	if !(fraction > 0 && fraction < 1) {
		return nil, nil, fmt.Errorf("data: eval fraction must be in (0, 1), got %v", fraction)
	}
	x := fraction * float64(len(docs))
	n := math.Ceil(x)
	if r := math.Round(x); math.Abs(x-r) <= 1e-9*math.Max(1, x) {
		n = r
	}
	held := max(int(n), 1)
	if len(docs)-held < 1 {
		return nil, nil, fmt.Errorf("data: %d documents; holding out %d for eval (fraction %v) leaves none to train on", len(docs), held, fraction)
	}
	cut := len(docs) - held
	return docs[:cut:cut], docs[cut:], nil
}

// NewDocumentBatcher serves micro-batches of document rows (see above):
// row k of an epoch is document k, truncated or padded with pad to rowLen
// tokens; the order, shuffling and Position are NewBatcher's, over
// documents instead of rows. LossMask and Tokens describe the batch that
// Next returned last.
func NewDocumentBatcher(docs [][]int32, rowLen, batch int, pad int32, shuffle bool, seed uint64) (*Batcher, error) {
	if rowLen < 2 {
		return nil, fmt.Errorf("data: document rows need a length >= 2, got %d", rowLen)
	}
	if batch < 1 {
		return nil, fmt.Errorf("data: batch size must be >= 1, got %d", batch)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("data: no documents")
	}
	return &Batcher{docs: docs, pad: pad, rowLen: rowLen, batch: batch, rows: len(docs), shuffle: shuffle, seed: seed}, nil
}

// Documents reports whether b serves document rows (NewDocumentBatcher).
func (b *Batcher) Documents() bool { return b.docs != nil }

// LossMask is the loss mask of the last batch of document rows: [batch,
// rowLen−1], 1 where the label (the next id) is not the pad id, else 0 —
// the seed's labels with pad → −100. Nil for packed rows, where every
// position counts.
func (b *Batcher) LossMask() []float32 { return b.mask }

// Tokens is the number of ids in the last batch that are not the pad id
// (the seed's tokens_seen); batch·rowLen for packed rows.
func (b *Batcher) Tokens() int64 { return b.tokensLast }

// fillDocument writes the row of one document into dst (rowLen ids: doc
// truncated or padded with pad) and its mask into m (rowLen−1 values) and
// returns its non-pad count. Both document batchers (NewDocumentBatcher,
// NewStreamBatcher) fill their rows with it.
func fillDocument(doc []int32, pad int32, dst []int64, m []float32) int64 {
	var n int64
	for j := range dst {
		v := pad
		if j < len(doc) {
			v = doc[j]
		}
		dst[j] = int64(v)
		if v != pad {
			n++
		}
	}
	for j := range m {
		m[j] = 0
		if dst[j+1] != int64(pad) {
			m[j] = 1
		}
	}
	return n
}
