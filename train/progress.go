package train

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"gitee.com/gidean/conv-linn/summary"
)

// NewLineProgress is the Progress slc train shows on w: tty when w is a
// terminal.
func NewLineProgress(w io.Writer, tty bool, logEvery int) Progress {
	return &progress{w: w, tty: tty, logEvery: logEvery}
}

// progress shows a training run: on a terminal one line redrawn in place
// (a bar, step, loss, lr, tokens/s, ETA), elsewhere (a log file, a pipe) a
// plain line every logEvery updates and at the first and last. Evals, saves
// and messages print their own lines. It is safe for the signal goroutine.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	logEvery int
	drawn    bool // a redrawn line is on screen
}

// Step implements Observer.
func (p *progress) Step(r StepRecord, total int, eta time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	stats := fmt.Sprintf("loss %.4f  lr %.3g  grad_norm %.3g  %s tok/s  elapsed %s  ETA %s",
		r.Loss, r.LR, r.GradNorm, summary.Grouped(int64(r.TokensPerS)), FormatDuration(time.Duration(r.ElapsedS*float64(time.Second))), FormatDuration(eta))
	if p.tty {
		const width = 20
		done := width * r.Step / total
		bar := strings.Repeat("█", done) + strings.Repeat("░", width-done)
		fmt.Fprintf(p.w, "\r\033[K%s step %d/%d  %s", bar, r.Step, total, stats)
		p.drawn = true
		return
	}
	if r.Step == 1 || r.Step%p.logEvery == 0 || r.Step == total {
		fmt.Fprintf(p.w, "step %d/%d  %s\n", r.Step, total, stats)
	}
}

// Eval implements Observer.
func (p *progress) Eval(e EvalRecord) {
	p.line(fmt.Sprintf("eval at step %d: loss %.4f, perplexity %.2f%s", e.Step, e.EvalLoss, e.EvalPPL, e.SeedNote()))
}

// Saved implements Observer.
func (p *progress) Saved(dir string, step int) {
	p.line(fmt.Sprintf("saved %s", dir))
}

// Message implements Progress: a line of its own.
func (p *progress) Message(s string) { p.line(s) }

func (p *progress) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	fmt.Fprintln(p.w, s)
}

// Finish implements Progress: it ends a redrawn line, so what
// follows starts on its own.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
