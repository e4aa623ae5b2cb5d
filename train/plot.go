package train

import (
	"bytes"
	"errors"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotLoss draws the loss curve of a run as a PNG at path (written
// atomically): the training loss per update and the eval loss at each
// evaluation, against the update step. Points that are not finite are left
// out.
func PlotLoss(path, title string, steps []StepRecord, evals []EvalRecord) error {
	var train, eval plotter.XYs
	for _, s := range steps {
		if isFinite(s.Loss) {
			train = append(train, plotter.XY{X: float64(s.Step), Y: s.Loss})
		}
	}
	for _, e := range evals {
		if isFinite(e.EvalLoss) {
			eval = append(eval, plotter.XY{X: float64(e.Step), Y: e.EvalLoss})
		}
	}
	if len(train) == 0 && len(eval) == 0 {
		return errors.New("no finite loss to plot")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "update step"
	p.Y.Label.Text = "loss (mean cross-entropy, nats)"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	if len(train) > 0 {
		l, err := plotter.NewLine(train)
		if err != nil {
			return err
		}
		l.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
		l.Width = vg.Points(1)
		p.Add(l)
		p.Legend.Add("train", l)
	}
	if len(eval) > 0 {
		l, pts, err := plotter.NewLinePoints(eval)
		if err != nil {
			return err
		}
		red := color.RGBA{R: 214, G: 39, B: 40, A: 255}
		l.Color, l.Width = red, vg.Points(1.5)
		pts.Color, pts.Shape, pts.Radius = red, draw.CircleGlyph{}, vg.Points(2.5)
		p.Add(l, pts)
		p.Legend.Add("eval", l, pts)
	}
	w, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return err
	}
	return writeAtomic(path, buf.Bytes())
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
