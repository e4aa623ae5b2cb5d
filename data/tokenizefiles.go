package data

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/tokenizer"
)

// TokenizeOptions say how TokenizeFiles writes its shards (Wide: uint32
// tokens, else uint16; on Threads goroutines) and reports: a line per
// finished shard to Log (nil: none), and when TTY (Log is a terminal) a
// line redrawn in place while a shard is read.
type TokenizeOptions struct {
	Wide    bool
	Threads int
	Log     io.Writer
	TTY     bool
}

// ShardOutputs names each input shard's output, dir/<name>.bin; two inputs
// that would be written to one file are an error.
func ShardOutputs(files []string, dir string) ([]string, error) {
	outs := make([]string, len(files))
	seen := map[string]string{}
	for i, f := range files {
		outs[i] = filepath.Join(dir, c4.Base(f)+".bin")
		if g, ok := seen[outs[i]]; ok {
			return nil, fmt.Errorf("%s and %s would both be written to %s", g, f, outs[i])
		}
		seen[outs[i]] = f
	}
	return outs, nil
}

// TokenizeFiles is slc tokenize: every input shard, in order, tokenized
// into dir (created if missing) by TokenizeShard. After a bad shard the
// ones before it are done and the rest are not started; a cancelled ctx
// stops the shard being written, which is then not written at all. The
// stats are the totals, Seconds the time the shards took.
func TokenizeFiles(ctx context.Context, files []string, dir string, m *tokenizer.Model, o TokenizeOptions) (ShardStats, error) {
	var total ShardStats
	outs, err := ShardOutputs(files, dir)
	if err != nil {
		return total, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return total, fmt.Errorf("%s: %w", dir, unwrapPath(err))
	}
	p := newTokenizeProgress(o.Log, o.TTY, files)
	start := time.Now()
	for i, f := range files {
		st, err := TokenizeShard(ctx, f, outs[i], m, ShardOptions{Wide: o.Wide, Threads: o.Threads, Progress: p.update})
		if err != nil {
			p.clear()
			if ctx.Err() != nil {
				return total, fmt.Errorf("interrupted while tokenizing %s; %s was not written", f, outs[i])
			}
			return total, err
		}
		total.Docs += st.Docs
		total.Tokens += st.Tokens
		p.shardDone(i, outs[i], st)
	}
	total.Seconds = time.Since(start).Seconds()
	return total, nil
}

// tokenizeProgress reports on Log: on a terminal one line redrawn in place
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

func newTokenizeProgress(w io.Writer, tty bool, files []string) *tokenizeProgress {
	if w == nil {
		w, tty = io.Discard, false
	}
	p := &tokenizeProgress{w: w, tty: tty, n: len(files), start: time.Now()}
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
		eta = summary.Duration(time.Duration(sec * (1 - frac) / frac * float64(time.Second)))
	}
	fmt.Fprintf(p.w, "\r\033[Ktokenize: shard %d/%d %3.0f%%  %s tokens  %s tokens/s  ETA %s",
		p.shard+1, p.n, 100*frac, summary.Grouped(p.tokens+tokens), summary.Grouped(int64(float64(p.tokens+tokens)/sec)), eta)
	p.drawn = true
}

// shardDone prints a finished shard's line.
func (p *tokenizeProgress) shardDone(i int, out string, st ShardStats) {
	p.clear()
	p.done += p.sizes[i]
	p.tokens += st.Tokens
	p.shard = i + 1
	fmt.Fprintf(p.w, "tokenize: %d/%d %s: %s documents, %s tokens in %s (%s tokens/s)\n",
		i+1, p.n, out, summary.Grouped(st.Docs), summary.Grouped(st.Tokens), strings.TrimSpace(summary.Duration(time.Duration(st.Seconds*float64(time.Second)))), summary.Grouped(int64(float64(st.Tokens)/max(st.Seconds, 1e-9))))
}

// clear removes a redrawn line.
func (p *tokenizeProgress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
