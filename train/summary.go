package train

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"gitee.com/gidean/conv-linn/collective"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/tokenizer"
)

func grouped(n int64) string { return summary.Grouped(n) }

// printSetup prints the run's Data and Training lines.
func (r *run) printSetup(d *runData, tok *tokenizer.Model, where string) {
	s := &r.set
	r.printf("Data: %s: %s; %s\n", s.Data, r.rowsNote(d, tok), r.evalNote(d))
	clip := "off"
	if s.GradClipping > 0 {
		clip = fmt.Sprintf("%g", s.GradClipping)
	}
	ranks := ""
	if n := r.cfg.Comm.Size(); n > 1 {
		ranks, where = fmt.Sprintf(" on each of %d ranks", n), where+" per rank"
	}
	epochs := fmt.Sprintf("%.2f epochs", float64(int64(s.Steps)*int64(s.TotalBatchSize))/float64(max(d.rows, 1)))
	if s.Stream {
		epochs = "streamed epoch after epoch"
	}
	r.printf("Training: %d updates × %d sequences (%d micro-batch%s of %d%s) = %s tokens per update, %s; lr %g, %s, warmup %d, min ratio %g; %s, weight decay %g, clipping %s; %s\n",
		s.Steps, s.TotalBatchSize, r.accum, plural(r.accum, "", "es"), s.BatchSize, ranks, grouped(int64(s.TotalBatchSize)*int64(s.MaxLength)),
		epochs, s.LR, schedulerLabel(s), s.Warmup, s.MinLRRatio, optimizerLabel(s), s.WeightDecay, clip, where)
}

// schedulerLabel is the scheduler with its cycles, if any.
func schedulerLabel(s *Settings) string {
	switch {
	case s.Scheduler == CosineRestarts:
		return fmt.Sprintf("%s (cycle %d, restart warmup %d, adjust step %d)", s.Scheduler, s.Cycle, s.RestartWarmup, s.AdjustStep)
	case s.Cycle > 0:
		return fmt.Sprintf("%s (cycle %d)", s.Scheduler, s.Cycle)
	}
	return s.Scheduler
}

// rowsNote describes the training rows.
func (r *run) rowsNote(d *runData, tok *tokenizer.Model) string {
	s := &r.set
	switch {
	case s.Stream:
		order := "in order"
		if s.Shuffle {
			order = fmt.Sprintf("shuffled: each epoch's shard order, then a buffer of %d documents", cmp.Or(s.ShuffleBuffer, c4.DefaultBuffer))
		}
		return fmt.Sprintf("streams %d shard%s document by document (%s), one per row of %d tokens (truncated, padded with id %d; tokenizer %s)",
			len(d.shards), plural(len(d.shards), "", "s"), order, s.MaxLength, tok.PadID(), s.Tokenizer)
	case d.train.Documents():
		return fmt.Sprintf("%s train documents, one per row of %d tokens (truncated, padded with id %d; tokenizer %s)", grouped(int64(d.rows)), s.MaxLength, tok.PadID(), s.Tokenizer)
	case tok != nil:
		return fmt.Sprintf("%s train rows of %d tokens (tokenizer %s)", grouped(int64(d.rows)), s.MaxLength, s.Tokenizer)
	}
	return fmt.Sprintf("%s train rows of %d tokens", grouped(int64(d.rows)), s.MaxLength)
}

// evalNote describes the held-out rows and how they are evaluated.
func (r *run) evalNote(d *runData) string {
	s := &r.set
	if d.eval == nil {
		return "no evaluation (--eval-fraction 0)"
	}
	src := fmt.Sprintf("the last %g of the rows", s.EvalFraction)
	if s.EvalData != "" {
		src = s.EvalData
	}
	rows := grouped(int64(d.eval.Rows()))
	if s.EvalTokens > 0 {
		return fmt.Sprintf("%s eval rows (%s), evaluated the seed's way: shuffled (seed %d), batches until more than %s non-pad tokens", rows, src, seedEvalShuffle, grouped(s.EvalTokens))
	}
	return fmt.Sprintf("%s eval rows (%s), %d batches per eval", rows, src, EvalBatchCount(s.EvalBatches, d.eval.Rows(), s.BatchSize))
}

// summary is the run's end: the error with where it can resume from, or
// the loss plot and the Done (or Interrupted) lines.
func (r *run) summary(res *Result, err error) error {
	if err != nil {
		return r.failure(err)
	}
	s := &r.set
	plotNote := r.plot()
	if res.Interrupted {
		r.printf("Interrupted at update %d of %d: saved %s\n", res.Steps, s.Steps, res.Checkpoint)
		r.printf("%sResume with: slc train --continue-from %s\n", plotNote, res.Checkpoint)
		return nil
	}
	evalText := ""
	if res.Eval != nil {
		evalText = fmt.Sprintf(", eval loss %.4f (perplexity %.2f)%s", res.Eval.EvalLoss, res.Eval.EvalPPL, res.Eval.SeedNote())
	}
	final := "no update ran in this session"
	if res.LastStep.Step > 0 {
		final = fmt.Sprintf("final loss %.4f", res.LastStep.Loss)
	}
	r.printf("Done: %d updates in %s (%s tokens/s); %s%s\n", res.Steps, FormatDuration(time.Duration(res.Elapsed*float64(time.Second))),
		grouped(int64(res.TokensPerS)), final, evalText)
	r.printf("Checkpoint: %s (also %s)\n%s", res.Checkpoint, filepath.Join(r.saveDir, LatestLink), plotNote)
	return nil
}

// failure words a failed run with its last good checkpoint.
func (r *run) failure(err error) error {
	var nf *NonFiniteError
	var de *DataError
	var re *RankError
	var pe *collective.PeerError
	dir := latestCheckpoint(r.saveDir)
	switch {
	case errors.As(err, &nf) || errors.As(err, &de) || errors.As(err, &re):
		last := "no checkpoint was saved"
		if dir != "" {
			last = "the last good checkpoint is " + dir
		}
		return fmt.Errorf("%v; %s", err, last)
	case errors.As(err, &pe):
		last := "no checkpoint was saved yet"
		if dir != "" {
			last = fmt.Sprintf("the newest checkpoint %s is intact: resume with slc train --continue-from %s", dir, r.saveDir)
		}
		return fmt.Errorf("%v; stopped without saving, %s", err, last)
	}
	// Anything else (a full disk, an unwritable save dir): where the run
	// can resume from.
	last := "no checkpoint was saved"
	if dir != "" {
		last = fmt.Sprintf("the last good checkpoint is %s (resume with slc train --continue-from %s)", dir, r.saveDir)
	}
	return fmt.Errorf("%w; %s", err, last)
}

// plot draws the run's loss curve from its metrics (rank 0; the other
// ranks draw nothing) and says where, or why not.
func (r *run) plot() string {
	if r.cfg.Comm.Rank() != 0 {
		return ""
	}
	steps, evals, err := ReadMetrics(r.metrics)
	if err != nil || len(steps) == 0 {
		return ""
	}
	png := filepath.Join(r.saveDir, LossPlotName)
	title := fmt.Sprintf("%s, %s", filepath.Base(r.set.Model), peftLabelAlpha(&r.set))
	if err := PlotLoss(png, title, steps, evals); err != nil {
		return fmt.Sprintf("Loss curve: not written (%v)\n", err)
	}
	return fmt.Sprintf("Loss curve: %s\n", png)
}
