package spectrum

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// Run is one analyzed checkpoint: its label (the "run" column and the
// legends) and its layers' results.
type Run struct {
	Label   string
	Model   *Model
	Results []Result
}

// SpectrumCSV is spectrum.csv: one row per singular value, with the header
// run,layer,component,index,value (component L, S, L+S or W; index from 1,
// largest value first; values in Go's shortest exact form, so they read back
// as the very float64 computed).
func SpectrumCSV(runs []Run) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"run", "layer", "component", "index", "value"})
	for _, run := range runs {
		for i := range run.Results {
			r := &run.Results[i]
			for _, comp := range []string{CompL, CompS, CompSum, CompDense} {
				for k, v := range r.Component(comp) {
					w.Write([]string{run.Label, r.Layer, comp, strconv.Itoa(k + 1), strconv.FormatFloat(v, 'g', -1, 64)})
				}
			}
		}
	}
	w.Flush()
	return buf.Bytes()
}

// SummaryColumns is the header of summary.csv. The "_W" columns are about
// the whole weight (L+S, or the dense W); a number that does not apply (L or
// S of a dense layer, top-r without an r) is empty.
var SummaryColumns = []string{"run", "layer", "block", "type", "out", "in", "r", "nnz",
	"erank_L", "erank_S", "erank_W", "stable_rank_L", "stable_rank_S", "stable_rank_W",
	"fro_L", "fro_S", "fro_W", "S_energy_share", "top_r", "top_r_energy_W", "top_r_energy_in_L"}

// SummaryCSV is summary.csv: one row per layer (SummaryColumns).
func SummaryCSV(runs []Run) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(SummaryColumns)
	for _, run := range runs {
		for i := range run.Results {
			r := &run.Results[i]
			row := []string{run.Label, r.Layer, strconv.Itoa(r.Block), r.Type, strconv.Itoa(r.Out), strconv.Itoa(r.In), strconv.Itoa(r.R), strconv.Itoa(r.NNZ)}
			for _, v := range []float64{r.ERankL, r.ERankS, r.ERankW, r.SRankL, r.SRankS, r.SRankW, r.NormL, r.NormS, r.NormW, r.SShare} {
				row = append(row, number(v))
			}
			if r.TopR > 0 {
				row = append(row, strconv.Itoa(r.TopR), number(r.TopW), number(r.CapturedL))
			} else {
				row = append(row, "", "", "")
			}
			w.Write(row)
		}
	}
	w.Flush()
	return buf.Bytes()
}

// number formats a summary number exactly; NaN (does not apply) is empty.
func number(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// WriteTable prints a run's summary as an aligned table, one row per layer.
func WriteTable(w io.Writer, run Run) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tout×in\tr\terank W\tstable rank W\terank L\terank S\tS energy\ttop-r best\ttop-r in L\t")
	for i := range run.Results {
		r := &run.Results[i]
		topW, inL := "", ""
		if r.TopR > 0 {
			topW, inL = fixed(r.TopW, 3), fixed(r.CapturedL, 3)
		}
		rank := ""
		if r.R > 0 {
			rank = strconv.Itoa(r.R)
		}
		fmt.Fprintf(tw, "%s\t%d×%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Layer, r.Out, r.In, rank,
			fixed(r.ERankW, 1), fixed(r.SRankW, 2), fixed(r.ERankL, 1), fixed(r.ERankS, 1), fixed(r.SShare, 3), topW, inL)
	}
	return tw.Flush()
}

// fixed formats v with prec decimals; NaN (does not apply) is "-".
func fixed(v float64, prec int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}
