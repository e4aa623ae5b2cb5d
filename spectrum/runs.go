package spectrum

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gitee.com/gidean/conv-linn/summary"
)

// OpenRuns opens each CKPT argument's model (resolve turns an argument into
// its checkpoint directory: a save dir's latest) under its label; the rank
// is rank when > 0, else the first SLTrain model's (0 without one).
func OpenRuns(args, labels []string, rank int, resolve func(string) string) ([]Run, int, error) {
	runs := make([]Run, len(args))
	for i, a := range args {
		m, err := Open(resolve(a))
		if err != nil {
			return nil, 0, err
		}
		if m.SLTrain() && rank == 0 {
			rank = m.Rank
		}
		runs[i] = Run{Label: labels[i], Model: m}
	}
	return runs, rank, nil
}

// FigureBlock is the block the figures show: layer when set, else the
// first run's middle block (-1 for a model without blocks). Every run must
// have it; the error says which one does not (a usage error of --layer).
func FigureBlock(runs []Run, layer int, set bool) (int, error) {
	block := -1
	if blocks := runs[0].Model.Blocks(); set {
		block = layer
	} else if len(blocks) > 0 {
		block = blocks[len(blocks)/2]
	}
	for _, r := range runs {
		has := false
		for _, l := range r.Model.Layers {
			has = has || l.Block == block
		}
		if !has {
			hint := ""
			if !set {
				hint = "; give --layer with a block every CKPT has"
			}
			return 0, fmt.Errorf("flag --layer: %s has no block %d (its blocks: %s)%s", r.Model.Path, block, blockRange(r.Model.Blocks()), hint)
		}
	}
	return block, nil
}

// DefaultTailFrom is where the tail views start: at the rank r, where L's
// spectrum ends; without one, at a quarter of the smallest layer dimension.
func DefaultTailFrom(runs []Run, rank int) int {
	if rank > 0 {
		return rank
	}
	smallest := 0
	for _, r := range runs {
		for _, l := range r.Model.Layers {
			if d := min(l.Out, l.In); smallest == 0 || d < smallest {
				smallest = d
			}
		}
	}
	return max(1, smallest/4)
}

// blockRange spells a sorted list of block numbers, "0–7" when contiguous.
func blockRange(bs []int) string {
	switch {
	case len(bs) == 0:
		return "none"
	case bs[len(bs)-1]-bs[0] == len(bs)-1:
		return fmt.Sprintf("%d–%d", bs[0], bs[len(bs)-1])
	}
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(bs)), ", "), "[]")
}

// CheckpointLabels names each run by its directory (one named latestLink
// by the save dir above it); runs whose names clash take their paths as
// given.
func CheckpointLabels(args []string, latestLink string) []string {
	labels := make([]string, len(args))
	count := map[string]int{}
	for i, a := range args {
		p := filepath.Clean(a)
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if filepath.Base(p) == latestLink {
			p = filepath.Dir(p)
		}
		labels[i] = filepath.Base(p)
		count[labels[i]]++
	}
	for i, a := range args {
		if count[labels[i]] > 1 {
			labels[i] = filepath.Clean(a)
		}
	}
	return labels
}

// LayerBar shows Analyze's progress: on a terminal (tty) a bar redrawn in
// place, elsewhere one line when the run is done. Update is Options.Progress.
type LayerBar struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string
	start time.Time
	done  int
}

// NewLayerBar starts a run's bar on w.
func NewLayerBar(w io.Writer, tty bool, label string) *LayerBar {
	return &LayerBar{w: w, tty: tty, label: label, start: time.Now()}
}

// Update records done of total layers analyzed (and redraws on a terminal).
func (b *LayerBar) Update(done, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = done
	if b.tty {
		const width = 20
		n := width * done / total
		fmt.Fprintf(b.w, "\r\033[K%s%s %s: %d/%d layers", strings.Repeat("█", n), strings.Repeat("░", width-n), b.label, done, total)
	}
}

// Finish prints the run's line.
func (b *LayerBar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty {
		fmt.Fprint(b.w, "\r\033[K")
	}
	fmt.Fprintf(b.w, "%s: %d layers analyzed in %s\n", b.label, b.done, summary.Duration(time.Since(b.start)))
}
