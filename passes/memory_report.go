package passes

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// NamedUsage is one column of a memory report: a configuration's name (such
// as "--peft full") and its budget.
type NamedUsage struct {
	Name  string
	Usage MemoryUsage
}

// memoryRows are the report's rows: label and value, in order. Total is the
// memory a run needs (persistent state and inputs plus the planned arena); the
// no-reuse and backward rows are for comparison and are not added to it.
var memoryRows = []struct {
	label string
	value func(MemoryUsage) int64
}{
	{"parameters", func(u MemoryUsage) int64 { return u.Params }},
	{"gradients", func(u MemoryUsage) int64 { return u.Gradients }},
	{"optimizer state", func(u MemoryUsage) int64 { return u.OptState }},
	{"activations (planned)", func(u MemoryUsage) int64 { return u.Activations }},
	{"  of which backward at peak", func(u MemoryUsage) int64 { return u.TransientGrads }},
	{"activations (no reuse)", func(u MemoryUsage) int64 { return u.ActivationsNoReuse }},
	{"data inputs", func(u MemoryUsage) int64 { return u.Data }},
	{"total", MemoryUsage.Total},
}

// WriteMemoryReport prints the memory budgets side by side, one column per
// configuration, in MiB (2^20 bytes) with two decimals, like the seed's memory
// table: parameters, gradients, optimizer state, planned activations (the
// arena), no-reuse activations, data inputs and the total.
func WriteMemoryReport(w io.Writer, cols ...NamedUsage) error {
	rows := [][]string{{"memory (MiB)"}}
	for _, c := range cols {
		rows[0] = append(rows[0], c.Name)
	}
	for _, r := range memoryRows {
		cells := []string{r.label}
		for _, c := range cols {
			cells = append(cells, fmt.Sprintf("%.2f", float64(r.value(c.Usage))/(1<<20)))
		}
		rows = append(rows, cells)
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if i == 0 {
				b.WriteString(cell + pad)
			} else {
				b.WriteString("  " + pad + cell)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
