package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"gitee.com/gidean/conv-linn/train"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/atomicfile"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/tokenizer"
)

func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "tokenize",
		Usage:     "pre-tokenize C4-format JSON-lines shards into llm.c token shards (.bin) for slc train --data",
		ArgsUsage: "DATA...",
		Description: "DATA is a shard (.json.gz, .jsonl.gz, .json or .jsonl, one {\"text\": ...} object per line, as\n" +
			"C4's c4-train.XXXXX-of-01024.json.gz), a directory of shards or a glob; several may be given.\n" +
			"Each shard becomes DIR/<name>.bin: every document's ids, then the tokenizer's end-of-text id\n" +
			"(</s>, as Hugging Face's T5 tokenizer appends it), in file order. Tokens are uint16 (llm.c's\n" +
			"header: magic 20240520, version 1) when every id fits, else uint32 (magic 20240801, version 7).\n" +
			"The documents of a shard are tokenized on --threads cores; the output is the same bytes for\n" +
			"any thread count. Every .bin is written whole (a temporary file, fsynced and renamed) or not at\n" +
			"all; after a bad shard, the shards before it are done and the rest are not started. Invalid\n" +
			"UTF-8 in a text is tokenized as SentencePiece does (byte pieces, or the unknown id).\n\n" +
			"  slc tokenize c4/en/ --tokenizer t5-base/spiece.model -o c4-tokens/\n" +
			"  slc train llama_60m.json --data 'c4-tokens/*.bin' ...",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("tokenize"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tokenizer", Usage: "SentencePiece `FILE`.model (unigram or BPE) to tokenize with", TakesFile: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the .bin shards into `DIR` (created if missing)", TakesFile: true},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` threads tokenizing", DefaultText: "all cores"},
			&cli.StringFlag{Name: "dtype", Value: "auto", Usage: "`TYPE` of the tokens: auto (uint16 when the vocabulary fits), uint16 or uint32"},
		},
		Action: func(c *cli.Context) error { return tokenizeMain(c) },
	}
}

// llm.c token shards: a header of 256 little-endian int32 (magic, version,
// token count), then the tokens.
const (
	binHeaderWords = 256
	binMagicU16    = 20240520 // version 1, uint16 tokens
	binMagicU32    = 20240801 // version 7, uint32 tokens
)

// tokenizeBatchBytes is about how much text one batch of documents holds: a
// thread's unit of work.
const tokenizeBatchBytes = 128 << 10

func tokenizeMain(c *cli.Context) error {
	const cmd = "tokenize"
	model, out, threads := c.String("tokenizer"), c.String("output"), c.Int("threads")
	switch {
	case c.NArg() == 0:
		return usagef(cmd, "missing DATA argument")
	case model == "":
		return usagef(cmd, "missing --tokenizer FILE.model")
	case out == "":
		return usagef(cmd, "missing -o DIR")
	case threads < 1:
		return usagef(cmd, "flag --threads: must be >= 1, got %d", threads)
	}
	dtype := c.String("dtype")
	if dtype != "auto" && dtype != "uint16" && dtype != "uint32" {
		return usagef(cmd, "flag --dtype: %q is not auto, uint16 or uint32", dtype)
	}
	for _, a := range c.Args().Slice() {
		if a == "" {
			return usagef(cmd, "DATA is an empty path")
		}
	}
	files, err := c4.Files(c.Args().Slice()...)
	if err != nil {
		return err
	}
	m, err := tokenizer.Load(model)
	if err != nil {
		return err
	}
	if m.EOSID() < 0 {
		return fmt.Errorf("%s: the model has no end-of-text piece (</s>) to end each document with", model)
	}
	wide := m.VocabSize() > 1<<16
	switch {
	case dtype == "uint16" && wide:
		return fmt.Errorf("%s: %d pieces do not fit uint16 tokens (ids below 65536); use --dtype uint32 or auto", model, m.VocabSize())
	case dtype == "uint32":
		wide = true
	}
	outs := make([]string, len(files))
	seen := map[string]string{}
	for i, f := range files {
		outs[i] = filepath.Join(out, c4.Base(f)+".bin")
		if g, ok := seen[outs[i]]; ok {
			return fmt.Errorf("%s and %s would both be written to %s", g, f, outs[i])
		}
		seen[outs[i]] = f
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("%s: %w", out, unwrapPath(err))
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := newTokenizeProgress(c.App.ErrWriter, files)
	start := time.Now()
	var total tokenizeStats
	for i, f := range files {
		st, err := tokenizeShard(ctx, f, outs[i], m, wide, threads, p)
		if err != nil {
			p.clear()
			if ctx.Err() != nil && c.Context.Err() == nil {
				return fmt.Errorf("interrupted while tokenizing %s; %s was not written", f, outs[i])
			}
			return err
		}
		total.docs += st.docs
		total.tokens += st.tokens
		p.shardDone(i, f, outs[i], st)
	}
	sec := time.Since(start).Seconds()
	typ := "uint16"
	if wide {
		typ = "uint32"
	}
	printf(c, "tokenized %d shards into %s: %s documents, %s %s tokens (end-of-text id %d after each document) in %.1f s, %s tokens/s on %d threads\n",
		len(files), out, summary.Grouped(total.docs), summary.Grouped(total.tokens), typ, m.EOSID(), sec, summary.Grouped(int64(float64(total.tokens)/sec)), threads)
	return nil
}

// unwrapPath drops the os package's repetition of the operation and path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

type tokenizeStats struct {
	docs, tokens int64
	sec          float64
}

// tokenizeBatch is a run of consecutive documents of a shard and, once done
// is closed, their tokens as the shard stores them.
type tokenizeBatch struct {
	docs   []string
	err    error // the read error that ends the shard (then docs is empty)
	out    []byte
	tokens int64
	done   chan struct{}
}

// tokenizeShard writes the tokens of shard in to out. One goroutine reads the
// documents into batches, threads goroutines tokenize them, and this one
// writes the batches in read order, so the bytes do not depend on threads.
func tokenizeShard(ctx context.Context, in, out string, m *tokenizer.Model, wide bool, threads int, p *tokenizeProgress) (tokenizeStats, error) {
	sh, err := c4.OpenShard(in, 0)
	if err != nil {
		return tokenizeStats{}, err
	}
	defer sh.Close()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred below), before sh.Close
	defer cancel()

	jobs := make(chan *tokenizeBatch, threads)
	order := make(chan *tokenizeBatch, 2*threads)
	wg.Add(1 + threads)
	go func() {
		defer wg.Done()
		defer close(jobs)
		defer close(order)
		for eof := false; !eof; {
			b := &tokenizeBatch{done: make(chan struct{})}
			for size := 0; size < tokenizeBatchBytes; {
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

	var st tokenizeStats
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
			if st.tokens+b.tokens > math.MaxInt32 {
				return 0, fmt.Errorf("%s: more than %d tokens, the most an llm.c shard's header counts; split the shard", in, math.MaxInt32)
			}
			if _, err := w.Write(b.out); err != nil {
				return 0, fmt.Errorf("%s: %w", out, unwrapPath(err))
			}
			st.docs += int64(len(b.docs))
			st.tokens += b.tokens
			p.update(sh.BytesRead(), st.tokens)
		}
		return st.tokens, ctx.Err()
	})
	st.sec = time.Since(start).Seconds()
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

// tokenizeProgress reports on stderr: on a terminal one line redrawn in place
// (shard, share of the input read, tokens/s, ETA), and a line per finished
// shard everywhere.
type tokenizeProgress struct {
	w      io.Writer
	tty    bool
	n      int
	sizes  []int64 // input file sizes
	total  int64   // their sum
	done   int64   // bytes of the finished shards
	shard  int     // the shard being read
	start  time.Time
	tokens int64 // tokens of the finished shards
	drawn  bool
	lastAt time.Time
}

func newTokenizeProgress(w io.Writer, files []string) *tokenizeProgress {
	p := &tokenizeProgress{w: w, tty: isTerminal(w), n: len(files), start: time.Now()}
	for _, f := range files {
		var size int64
		if fi, err := os.Stat(f); err == nil {
			size = fi.Size()
		}
		p.sizes = append(p.sizes, size)
		p.total += size
	}
	return p
}

// update redraws the line (on a terminal, at most 5 times a second) with the
// current shard's bytes read and tokens written.
func (p *tokenizeProgress) update(read, tokens int64) {
	if !p.tty || time.Since(p.lastAt) < 200*time.Millisecond {
		return
	}
	p.lastAt = time.Now()
	sec := time.Since(p.start).Seconds()
	frac := float64(p.done+read) / float64(max(p.total, 1))
	eta := "?"
	if frac > 0 {
		eta = train.FormatDuration(time.Duration(sec * (1 - frac) / frac * float64(time.Second)))
	}
	fmt.Fprintf(p.w, "\r\033[Ktokenize: shard %d/%d %3.0f%%  %s tokens  %s tokens/s  ETA %s",
		p.shard+1, p.n, 100*frac, summary.Grouped(p.tokens+tokens), summary.Grouped(int64(float64(p.tokens+tokens)/sec)), eta)
	p.drawn = true
}

// shardDone prints a finished shard's line.
func (p *tokenizeProgress) shardDone(i int, in, out string, st tokenizeStats) {
	p.clear()
	p.done += p.sizes[i]
	p.tokens += st.tokens
	p.shard = i + 1
	fmt.Fprintf(p.w, "tokenize: %d/%d %s: %s documents, %s tokens in %s (%s tokens/s)\n",
		i+1, p.n, out, summary.Grouped(st.docs), summary.Grouped(st.tokens), strings.TrimSpace(train.FormatDuration(time.Duration(st.sec*float64(time.Second)))), summary.Grouped(int64(float64(st.tokens)/max(st.sec, 1e-9))))
}

// clear removes a redrawn line.
func (p *tokenizeProgress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
