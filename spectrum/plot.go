package spectrum

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// palette is matplotlib's "tab10" (as slc plot's), so that the figures look
// like the seed's: L blue, S orange, L+S green; runs in that order too.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

// Figure layout: panels of 3.2 × 2.6 inches, four to a row, at vgimg's 96 dpi.
const (
	panelCols   = 4
	panelWidth  = 3.2 * vg.Inch
	panelHeight = 2.6 * vg.Inch
	titleHeight = 0.45 * vg.Inch
)

// curve is one spectrum drawn in a panel.
type curve struct {
	label  string
	values []float64
	color  color.RGBA
	dashed bool
}

// panel is one layer's subplot.
type panel struct {
	title  string
	curves []curve
}

// LayersOf returns the results of a block's layers, in the order of Types
// (all the layers without a block number when block is -1).
func LayersOf(run Run, block int) []*Result {
	var rs []*Result
	for i := range run.Results {
		if run.Results[i].Block == block {
			rs = append(rs, &run.Results[i])
		}
	}
	return rs
}

// BlockFigure draws the seed's figure for one run: per layer of the block, a
// panel with the singular values of L, S and L+S (or the dense W) against
// their index, on a log scale. With tailFrom > 1 it is the zoomed tail view:
// only indices from tailFrom on, the axes fitted to them.
func BlockFigure(run Run, block, tailFrom int, title string) ([]byte, error) {
	var panels []panel
	for _, r := range LayersOf(run, block) {
		p := panel{title: r.Type + fmt.Sprintf(" (%d×%d)", r.Out, r.In)}
		if r.R > 0 {
			p.curves = []curve{
				{label: "L = B·A·scale", values: r.L, color: palette[0]},
				{label: "S", values: r.S, color: palette[1]},
				{label: "L + S", values: r.W, color: palette[2]},
			}
		} else {
			p.curves = []curve{{label: "W (dense)", values: r.W, color: palette[2]}}
		}
		panels = append(panels, p)
	}
	return figure(panels, tailFrom, title)
}

// CompareFigure draws the runs' whole weights side by side: per layer type
// of the block, one panel with every run's L+S (or dense W) spectrum.
func CompareFigure(runs []Run, block, tailFrom int, title string) ([]byte, error) {
	var panels []panel
	index := map[string]int{}
	for k, run := range runs {
		for _, r := range LayersOf(run, block) {
			i, ok := index[r.Type]
			if !ok {
				i = len(panels)
				index[r.Type] = i
				panels = append(panels, panel{title: r.Type + fmt.Sprintf(" (%d×%d)", r.Out, r.In)})
			}
			panels[i].curves = append(panels[i].curves, curve{label: run.Label + ": " + r.WName(), values: r.W, color: palette[k%len(palette)], dashed: k%2 == 1})
		}
	}
	return figure(panels, tailFrom, title)
}

// figure lays the panels out four to a row, the legend in the tile after
// the last, under a title, and renders a PNG.
func figure(panels []panel, tailFrom int, title string) ([]byte, error) {
	if len(panels) == 0 {
		return nil, errors.New("no layer to draw")
	}
	rows := (len(panels) + 1 + panelCols - 1) / panelCols // +1: the legend's tile
	plots := make([][]*plot.Plot, rows)
	for j := range plots {
		plots[j] = make([]*plot.Plot, panelCols)
	}
	for i, pn := range panels {
		p, err := panelPlot(pn, tailFrom)
		if err != nil {
			return nil, fmt.Errorf("panel %s: %w", pn.title, err)
		}
		plots[i/panelCols][i%panelCols] = p
	}
	legRow, legCol := len(panels)/panelCols, len(panels)%panelCols

	width, height := panelCols*panelWidth, vg.Length(rows)*panelHeight+titleHeight
	img := vgimg.New(width, height)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	head := plot.New()
	style := head.Title.TextStyle
	style.Font.Size = vg.Points(13)
	style.XAlign, style.YAlign = draw.XCenter, draw.YTop
	dc.FillText(style, vg.Point{X: width / 2, Y: height - vg.Points(6)}, title)
	body := draw.Crop(dc, 0, 0, 0, -titleHeight)
	tiles := draw.Tiles{Rows: rows, Cols: panelCols, PadX: vg.Points(14), PadY: vg.Points(14), PadLeft: vg.Points(6), PadRight: vg.Points(10), PadBottom: vg.Points(6)}
	canvases := plot.Align(plots, tiles, body)
	for j := range plots {
		for i, p := range plots[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	leg := legend(panels)
	leg.Draw(canvases[legRow][legCol])
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// zeroBelow is the relative size under which a singular value is zero up to
// rounding: values below zeroBelow·σ₁ of their curve (an S with empty rows
// has such values, of order 1e-17·σ₁) are left out of the plots, which would
// otherwise spend most of a log axis on noise. spectrum.csv keeps them.
const zeroBelow = 1e-12

// panelPlot draws one panel: each curve's values from index tailFrom (or 1)
// on, on a log y axis, the values that are zero up to rounding left out. A
// zero matrix (L before training) cannot be drawn on a log axis; a panel
// with nothing to draw says so in its title.
func panelPlot(pn panel, tailFrom int) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pn.title
	p.X.Label.Text = "index"
	p.Y.Label.Text = "singular value"
	p.Add(plotter.NewGrid())
	from := max(1, tailFrom)
	drawn := 0
	for _, c := range pn.curves {
		var xys plotter.XYs
		floor := 0.0
		if len(c.values) > 0 {
			floor = zeroBelow * c.values[0]
		}
		for k, v := range c.values {
			if k+1 >= from && v > floor && v > 0 && !math.IsInf(v, 0) {
				xys = append(xys, plotter.XY{X: float64(k + 1), Y: v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = c.color, vg.Points(1.5)
		if c.dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		drawn++
	}
	if drawn == 0 {
		p.Title.Text += ": all zero"
		return p, nil
	}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
	p.X.Tick.Marker = indexTicks{}
	if tailFrom > 1 {
		p.X.Min = float64(tailFrom)
	}
	return p, nil
}

// legend lists the panels' curves once each, for the figure's free tile.
func legend(panels []panel) plot.Legend {
	l := plot.NewLegend()
	l.Top, l.Left = true, true
	l.TextStyle.Font.Size = vg.Points(12)
	l.ThumbnailWidth = vg.Points(30)
	seen := map[string]bool{}
	for _, pn := range panels {
		for _, c := range pn.curves {
			if seen[c.label] {
				continue
			}
			seen[c.label] = true
			line := &plotter.Line{LineStyle: draw.LineStyle{Color: c.color, Width: vg.Points(2)}}
			if c.dashed {
				line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			l.Add(c.label, line)
		}
	}
	return l
}

// logTicks marks every 1..9 × 10^k and labels 10^k, and also 2 and 5 × 10^k
// when the axis spans at most two decades (gonum's LogTicks would leave a
// narrow tail view with one label or none); over many decades only every
// few 10^k are labelled.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0 && hi >= lo) {
		return nil
	}
	first, last := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	dense := math.Log10(hi/lo) <= 2
	every := math.Max(1, math.Ceil((last-first)/6)) // at most about 6 labels
	var ticks []plot.Tick
	for e := first; e <= last; e++ {
		base := math.Pow(10, e)
		for i := 1; i <= 9; i++ {
			v := float64(i) * base
			t := plot.Tick{Value: v}
			if (i == 1 && math.Mod(e-first, every) == 0) || (dense && (i == 2 || i == 5)) {
				t.Label = strconv.FormatFloat(v, 'g', 3, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// indexTicks are gonum's default ticks labelled as integers (the index axis).
type indexTicks struct{}

func (indexTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}
