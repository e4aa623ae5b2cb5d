package train

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Curves is one training run's curves, as read back by ReadMetrics, with the
// name its legend entries carry.
type Curves struct {
	Label string
	Steps []StepRecord
	Evals []EvalRecord
}

// PlotOptions say how PlotRuns draws.
type PlotOptions struct {
	Title string
	// EvalOnly leaves the training loss out: the eval curves alone, whose
	// differences the noisy per-update loss would otherwise hide.
	EvalOnly bool
	// YMax, when > 0, is the top of the loss axis: the first updates' loss
	// (about ln(vocabulary)) would otherwise squeeze the rest of the curves.
	YMax float64
}

// Size of the image: 8 × 5 inches at vgimg's 96 dpi, 768 × 480 pixels.
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 5 * vg.Inch
)

// palette is matplotlib's "tab10", so that the plots look like the seed's.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

// glyphs tell the runs' eval markers apart without colour.
var glyphs = []draw.GlyphDrawer{
	draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}, draw.PyramidGlyph{},
	draw.RingGlyph{}, draw.SquareGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{},
}

// PlotLoss draws the loss curve of a run as a PNG at path (written
// atomically): the training loss per update and the eval loss at each
// evaluation, against the update step. Points that are not finite are left
// out.
func PlotLoss(path, title string, steps []StepRecord, evals []EvalRecord) error {
	return PlotRuns(path, []Curves{{Steps: steps, Evals: evals}}, PlotOptions{Title: title})
}

// PlotRuns draws the loss curves of one or more runs against the update step
// into one PNG at path (written atomically, 768 × 480 pixels): each run's
// training loss as a thin line and its eval loss as a line with markers.
// With one run the two curves take two colours (legend "train", "eval",
// prefixed by the label if it has one); with several, each run takes one
// colour and one marker shape, the legend has one entry per run and a grey
// key to the two line styles. Points that are not finite are left out; a run
// with nothing finite to draw is an error naming it.
func PlotRuns(path string, runs []Curves, opt PlotOptions) error {
	img, err := RenderRuns(runs, opt)
	if err != nil {
		return err
	}
	return writeAtomic(path, img)
}

// RenderRuns is PlotRuns without the file: the PNG's bytes.
func RenderRuns(runs []Curves, opt PlotOptions) ([]byte, error) {
	if len(runs) == 0 {
		return nil, errors.New("no run to plot")
	}
	if opt.YMax < 0 || !isFinite(opt.YMax) {
		return nil, fmt.Errorf("the top of the loss axis must be a finite number > 0, got %v", opt.YMax)
	}
	p := plot.New()
	p.Title.Text = opt.Title
	p.X.Label.Text = "update step"
	p.Y.Label.Text = "loss (mean cross-entropy, nats)"
	if opt.EvalOnly {
		p.Y.Label.Text = "eval loss (mean cross-entropy, nats)"
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	single := len(runs) == 1
	bothStyles := false // some run shows a train and an eval curve
	lowest := math.Inf(1)
	for i, r := range runs {
		train, eval := finiteXYs(r, opt.EvalOnly)
		if len(train) == 0 && len(eval) == 0 {
			what := "loss"
			if opt.EvalOnly {
				what = "eval loss"
			}
			if single && r.Label == "" {
				return nil, fmt.Errorf("no finite %s to plot", what)
			}
			return nil, fmt.Errorf("run %q: no finite %s to plot", r.Label, what)
		}
		for _, xys := range []plotter.XYs{train, eval} {
			for _, xy := range xys {
				lowest = math.Min(lowest, xy.Y)
			}
		}
		bothStyles = bothStyles || (len(train) > 0 && len(eval) > 0)
		col := palette[i%len(palette)]
		trainColor, evalColor, glyph := color.Color(fade(col)), col, glyphs[i%len(glyphs)]
		trainWidth := vg.Points(0.75) // thin and half transparent: noisy curves overlap
		if single {
			trainColor, evalColor, glyph, trainWidth = palette[0], palette[3], glyphs[0], vg.Points(1)
		}
		var thumbs []plot.Thumbnailer
		if len(train) > 0 {
			l, err := plotter.NewLine(train)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width = trainColor, trainWidth
			p.Add(l)
			if single {
				p.Legend.Add(legendName(r.Label, "train"), l)
			}
			thumbs = []plot.Thumbnailer{l}
		}
		if len(eval) > 0 {
			l, pts, err := plotter.NewLinePoints(eval)
			if err != nil {
				return nil, err
			}
			l.Color, l.Width = evalColor, vg.Points(1.5)
			pts.Color, pts.Shape, pts.Radius = evalColor, glyph, vg.Points(2.5)
			p.Add(l, pts)
			if single {
				p.Legend.Add(legendName(r.Label, "eval"), l, pts)
			}
			thumbs = []plot.Thumbnailer{l, pts}
		}
		if !single {
			p.Legend.Add(r.Label, thumbs...)
		}
	}
	if !single && bothStyles {
		grey := color.RGBA{R: 100, G: 100, B: 100, A: 255}
		p.Legend.Add("train loss, per update", &plotter.Line{LineStyle: draw.LineStyle{Color: fade(grey), Width: vg.Points(0.75)}})
		p.Legend.Add("eval loss",
			&plotter.Line{LineStyle: draw.LineStyle{Color: grey, Width: vg.Points(1.5)}},
			&plotter.Scatter{GlyphStyle: draw.GlyphStyle{Color: grey, Shape: draw.CircleGlyph{}, Radius: vg.Points(2.5)}})
	}
	if opt.YMax > 0 {
		if opt.YMax <= lowest {
			return nil, fmt.Errorf("the top of the loss axis, %g, is below every loss (the lowest is %.4g)", opt.YMax, lowest)
		}
		p.Y.Max = opt.YMax
	}
	w, err := p.WriterTo(plotWidth, plotHeight, "png")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// finiteXYs are a run's finite training (unless evalOnly) and eval points.
func finiteXYs(r Curves, evalOnly bool) (train, eval plotter.XYs) {
	if !evalOnly {
		for _, s := range r.Steps {
			if isFinite(s.Loss) {
				train = append(train, plotter.XY{X: float64(s.Step), Y: s.Loss})
			}
		}
	}
	for _, e := range r.Evals {
		if isFinite(e.EvalLoss) {
			eval = append(eval, plotter.XY{X: float64(e.Step), Y: e.EvalLoss})
		}
	}
	return train, eval
}

// legendName is "train"/"eval" for an unlabelled run, else
// "LABEL train"/"LABEL eval".
func legendName(label, curve string) string {
	if label == "" {
		return curve
	}
	return label + " " + curve
}

// fade is c at 55% opacity.
func fade(c color.RGBA) color.NRGBA {
	return color.NRGBA{R: c.R, G: c.G, B: c.B, A: 140}
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
