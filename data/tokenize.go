package data

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/tokenizer"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// llm.c token shards: a header of 256 little-endian int32 (magic, version,
// token count), then the tokens.
const (
	binHeaderWords = 256
	binMagicU16    = 20240520 // version 1, uint16 tokens
	binMagicU32    = 20240801 // version 7, uint32 tokens
)

// shardBatchBytes is about how much text one batch of documents holds: a
// thread's unit of work.
const shardBatchBytes = 128 << 10

// unwrapPath drops the os package's repetition of the operation and path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ShardStats are what TokenizeShard wrote: documents, tokens and the
// seconds it took.
type ShardStats struct {
	Docs, Tokens int64
	Seconds      float64
}

// ShardOptions say how TokenizeShard writes: Wide (uint32 tokens, else
// uint16), on Threads goroutines, with Progress (when set) called after
// each batch with the bytes of the shard read and the tokens written.
type ShardOptions struct {
	Wide     bool
	Threads  int
	Progress func(read, tokens int64)
}

// shardBatch is a run of consecutive documents of a shard and, once done
// is closed, their tokens as the shard stores them.
type shardBatch struct {
	docs   []string
	err    error // the read error that ends the shard (then docs is empty)
	out    []byte
	tokens int64
	done   chan struct{}
}

// TokenizeShard writes the tokens of the C4 shard in to out, an llm.c
// token shard (each document ends with m's end-of-text id). One goroutine reads the
// documents into batches, threads goroutines tokenize them, and this one
// writes the batches in read order, so the bytes do not depend on threads.
func TokenizeShard(ctx context.Context, in, out string, m *tokenizer.Model, o ShardOptions) (ShardStats, error) {
	wide, threads := o.Wide, o.Threads
	sh, err := c4.OpenShard(in, 0)
	if err != nil {
		return ShardStats{}, err
	}
	defer sh.Close()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred below), before sh.Close
	defer cancel()

	jobs := make(chan *shardBatch, threads)
	order := make(chan *shardBatch, 2*threads)
	wg.Add(1 + threads)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(order)
		for eof := false; !eof; {
			b := &shardBatch{done: make(chan struct{})}
			for size := 0; size < shardBatchBytes; {
				d, err := sh.Next()
				if err != nil {
					if err != io.EOF {
						b.err = err
					}
					eof = true
					break
				}
				b.docs = append(b.docs, d.Text)
				size += len(d.Text) + 1
			}
			if len(b.docs) == 0 && b.err == nil {
				return
			}
			select {
			case order <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				close(b.done)
				return
			}
			select {
			case jobs <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	eos := m.EOSID()
	for range threads {
		go func() {
			defer wg.Done()
			for b := range jobs {
				for _, text := range b.docs {
					ids := append(m.Encode(text), eos)
					b.tokens += int64(len(ids))
					for _, id := range ids {
						if wide {
							b.out = binary.LittleEndian.AppendUint32(b.out, uint32(id))
						} else {
							b.out = binary.LittleEndian.AppendUint16(b.out, uint16(id))
						}
					}
				}
				close(b.done)
			}
		}()
	}

	var st ShardStats
	start := time.Now()
	err = writeTokenShard(out, wide, func(w io.Writer) (int64, error) {
		for b := range order {
			select {
			case <-b.done:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			if b.err != nil {
				return 0, b.err
			}
			if st.Tokens+b.tokens > math.MaxInt32 {
				return 0, fmt.Errorf("%s: more than %d tokens, the most an llm.c shard's header counts; split the shard", in, math.MaxInt32)
			}
			if _, err := w.Write(b.out); err != nil {
				return 0, fmt.Errorf("%s: %w", out, unwrapPath(err))
			}
			st.Docs += int64(len(b.docs))
			st.Tokens += b.tokens
			if o.Progress != nil {
				o.Progress(sh.BytesRead(), st.Tokens)
			}
		}
		return st.Tokens, ctx.Err()
	})
	st.Seconds = time.Since(start).Seconds()
	return st, err
}

// writeTokenShard writes an llm.c token shard atomically: a temporary file in
// the same directory gets a blank header, the tokens fill writes (it returns
// their count), then the header; it is fsynced and renamed over path. On any
// error the temporary file is removed and path is untouched.
func writeTokenShard(path string, wide bool, fill func(io.Writer) (int64, error)) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	fail := func(err error) error { return fmt.Errorf("%s: %w", path, unwrapPath(err)) }
	header := make([]byte, 4*binHeaderWords)
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err := bw.Write(header); err != nil {
		return fail(err)
	}
	count, err := fill(bw)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	magic, version := uint32(binMagicU16), uint32(1)
	if wide {
		magic, version = binMagicU32, 7
	}
	binary.LittleEndian.PutUint32(header[0:], magic)
	binary.LittleEndian.PutUint32(header[4:], version)
	binary.LittleEndian.PutUint32(header[8:], uint32(count))
	if _, err := tmp.WriteAt(header, 0); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fail(err)
	}
	return nil
}
