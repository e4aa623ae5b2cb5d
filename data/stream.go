package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"gitee.com/gidean/conv-linn/data/c4"
)

// StreamBatcher serves micro-batches of document rows straight from a C4
// stream (package c4), in bounded memory: row i of a batch is the stream's
// next document, tokenized — its ids, then the end-of-text id — and
// truncated or padded exactly as NewDocumentBatcher's rows are, with the same
// LossMask and Tokens. The order is the stream's (shard order, shuffle
// buffer, epochs), and the position is the stream's position of the next
// document, which a checkpoint stores as JSON (Mark) to resume the exact
// sequence. Documents are read and tokenized on demand, batch by batch, on
// the caller's goroutine: a batch of the seed's rows costs a few milliseconds,
// next to seconds of training.
type StreamBatcher struct {
	s             *c4.Stream
	enc           Encoder
	eos, pad      int32
	rowLen, batch int

	mask       []float32
	tokensLast int64
	err        error // the first read error; Next returns nil after it
}

// NewStreamBatcher serves batch document rows of rowLen tokens per Next from
// s, tokenized with enc, each document ended by eos and its row padded with
// pad. It starts where s stands and reads nothing yet.
func NewStreamBatcher(s *c4.Stream, enc Encoder, eos, pad int32, rowLen, batch int) (*StreamBatcher, error) {
	switch {
	case s == nil:
		return nil, errors.New("data: no stream")
	case enc == nil:
		return nil, errors.New("data: a stream of documents needs a tokenizer")
	case rowLen < 2:
		return nil, fmt.Errorf("data: document rows need a length >= 2, got %d", rowLen)
	case batch < 1:
		return nil, fmt.Errorf("data: batch size must be >= 1, got %d", batch)
	}
	return &StreamBatcher{s: s, enc: enc, eos: eos, pad: pad, rowLen: rowLen, batch: batch}, nil
}

// RowLen returns the tokens per row.
func (b *StreamBatcher) RowLen() int { return b.rowLen }

// Batch returns the rows per micro-batch.
func (b *StreamBatcher) Batch() int { return b.batch }

// Documents is true: a stream serves document rows.
func (b *StreamBatcher) Documents() bool { return true }

// Next returns the next micro-batch, batch·rowLen ids, row-major: the next
// batch documents of the stream. On a read error (a bad line, a corrupt
// shard, the end of the stream's last epoch) it returns nil and Err tells
// why; the batcher is then spent.
func (b *StreamBatcher) Next() []int64 {
	if b.err != nil {
		return nil
	}
	out := make([]int64, b.batch*b.rowLen)
	mask := make([]float32, b.batch*(b.rowLen-1))
	var n int64
	for i := range b.batch {
		d, err := b.s.Next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("data: the stream of documents ended (its last epoch is done)")
			}
			b.err = err
			return nil
		}
		ids := b.enc.Encode(d.Text)
		if len(ids) >= b.rowLen {
			ids = ids[:b.rowLen] // the end-of-text id is cut off with the rest
		} else {
			ids = append(ids, b.eos)
		}
		n += fillDocument(ids, b.pad, out[i*b.rowLen:(i+1)*b.rowLen], mask[i*(b.rowLen-1):(i+1)*(b.rowLen-1)])
	}
	b.mask, b.tokensLast = mask, n
	return out
}

// Err returns the error that ended the batches, or nil.
func (b *StreamBatcher) Err() error { return b.err }

// LossMask is the loss mask of the last batch: [batch, rowLen−1], 1 where
// the label is not the pad id (see Batcher.LossMask).
func (b *StreamBatcher) LossMask() []float32 { return b.mask }

// Tokens is the number of ids in the last batch that are not the pad id.
func (b *StreamBatcher) Tokens() int64 { return b.tokensLast }

// Position returns the stream's position of the next document the batches
// take.
func (b *StreamBatcher) Position() c4.Position { return b.s.Position() }

// Seek moves to a position Position returned by a batcher over the same
// files with the same stream options (c4.Stream.Seek), so that the following
// Next calls give exactly what they gave after it.
func (b *StreamBatcher) Seek(p c4.Position) error {
	if err := b.s.Seek(p); err != nil {
		b.err = err
		return err
	}
	b.err = nil
	return nil
}

// Mark returns the position as a checkpoint stores it: the stream's
// Position as JSON.
func (b *StreamBatcher) Mark() Mark {
	p := b.s.Position()
	raw, _ := json.Marshal(p) // four plain fields: cannot fail
	return Mark{Epoch: p.Epoch, Stream: raw}
}

// SeekMark moves to a position Mark returned (see Seek). A Mark without a
// stream position is an error: the run that saved it held its data in
// memory.
func (b *StreamBatcher) SeekMark(m Mark) error {
	if m.Stream == nil {
		return errors.New("data: the checkpoint holds no stream position (data_position): the run held its data in memory, and this one streams it")
	}
	var p c4.Position
	dec := json.NewDecoder(bytes.NewReader(m.Stream))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("data: the checkpoint's stream position (data_position) %s is not a c4 position: %v", m.Stream, err)
	}
	return b.Seek(p)
}

// Close releases the stream's open shard; the batcher is not usable
// afterwards.
func (b *StreamBatcher) Close() error { return b.s.Close() }

// JSONShards returns the files path names, as Load resolves it (a file, a
// directory's data files, a glob's matches) and as c4.Files orders them, when
// every one is a C4-format JSON shard (.json, .jsonl, .json.gz, .jsonl.gz);
// nil when one is not (a .txt, .npy or .bin file). Its error is Load's for a
// path that names no data file.
func JSONShards(path string) ([]string, error) {
	files, err := resolve(path)
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(files))
	for i, f := range files {
		if f.format != formatJSONL && f.format != formatJSONLGz {
			return nil, nil
		}
		paths[i] = f.path
	}
	return c4.Files(paths...)
}
