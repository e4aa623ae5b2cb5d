package summary

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gitee.com/gidean/conv-linn/ir"
)

// Millions prints n in millions with two decimals, as the seed's log does
// ("58.07M").
func Millions(n int64) string {
	return strconv.FormatFloat(float64(n)/1e6, 'f', 2, 64) + "M"
}

// Grouped prints n with thousands separators ("58,073,600").
func Grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// maxMetaValue is the longest metadata value Write prints in full.
const maxMetaValue = 60

// Write prints the summary as aligned plain text.
func (s *Summary) Write(w io.Writer) {
	p := &printer{w: w}
	if s.Graph == "" {
		p.line("Empty module: no graphs.")
		return
	}
	p.line("Total params: %s (%s in %s)", Millions(s.Params.Elems), Grouped(s.Params.Elems), plural(s.Params.Tensors, "tensor"))
	if len(s.Meta) > 0 {
		p.line("Metadata:")
		var t table
		for _, k := range sortedKeys(s.Meta) {
			v := s.Meta[k]
			if utf8.RuneCountInString(v) > maxMetaValue || strings.ContainsAny(v, "\n\r") {
				v = fmt.Sprintf("(%d bytes)", len(v))
			}
			t.row(k, v)
		}
		p.table(&t, "ll")
	}

	p.line("Parameters of graph %q:", s.Graph)
	var t table
	t.row("group", "params", "count", "tensors")
	for _, c := range s.Groups {
		if c.Tensors > 0 {
			t.row(c.Name, Millions(c.Elems), Grouped(c.Elems), strconv.Itoa(c.Tensors))
		}
	}
	t.row("kind", "", "", "")
	for _, c := range s.Kinds {
		if c.Tensors > 0 || c.Name == KindDense {
			t.row(c.Name, Millions(c.Elems), Grouped(c.Elems), strconv.Itoa(c.Tensors))
		}
	}
	for _, c := range s.State {
		t.row(c.Name, Millions(c.Elems), Grouped(c.Elems), strconv.Itoa(c.Tensors))
	}
	p.table(&t, "lrrr")

	if len(s.Buffers) > 0 {
		p.line("Buffers: %s (%s in %s)", Millions(s.BufferElems), Grouped(s.BufferElems), plural(len(s.Buffers), "tensor"))
	} else {
		p.line("Buffers: none")
	}

	p.line("Inputs:")
	p.tensors(s.Inputs, true)
	p.line("Outputs:")
	p.tensors(s.Outputs, false)
	if s.StateUpdates > 0 {
		p.line(fmt.Sprintf("  and %d updates of state inputs", s.StateUpdates))
	}

	if s.Layers > 0 {
		p.line("Layers: %d (%s params each)", s.Layers, Millions(s.LayerParams))
		p.tensors(s.LayerState, hasBuffer(s.LayerState))
	}
	if len(s.GlobalState) > 0 {
		if s.Layers > 0 {
			p.line("Outside the layers:")
		} else {
			p.line("Parameters and buffers:")
		}
		p.tensors(s.GlobalState, hasBuffer(s.GlobalState))
	}

	p.line("Graphs:")
	var gt table
	for _, g := range s.GraphDetails {
		gt.row(g.Name, plural(g.Nodes, "node"))
	}
	p.table(&gt, "lr")
}

// WriteOps prints, for every graph, how many nodes apply each op, most used
// first.
func (s *Summary) WriteOps(w io.Writer) {
	p := &printer{w: w}
	for _, g := range s.GraphDetails {
		p.line("Ops of graph %q (%s):", g.Name, plural(g.Nodes, "node"))
		var t table
		for _, o := range g.Ops {
			t.row(o.Op, strconv.Itoa(o.Nodes))
		}
		p.table(&t, "lr")
	}
}

func hasBuffer(ts []Tensor) bool {
	for _, t := range ts {
		if t.Role == ir.Buffer {
			return true
		}
	}
	return false
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// printer writes lines; output errors are the caller's writer's business (a
// closed pipe), so they are not reported.
type printer struct{ w io.Writer }

func (p *printer) line(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}

// tensors prints name, type and (when withRole) role columns.
func (p *printer) tensors(ts []Tensor, withRole bool) {
	if len(ts) == 0 {
		p.line("  (none)")
		return
	}
	var t table
	for _, x := range ts {
		if withRole {
			t.row(x.Name, x.Type.String(), x.Role.String())
		} else {
			t.row(x.Name, x.Type.String())
		}
	}
	p.table(&t, "lll")
}

// table is rows of cells printed with aligned columns.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

// table prints t indented by two spaces; align has one letter per column,
// 'l' or 'r'. Trailing blanks are trimmed.
func (p *printer) table(t *table, align string) {
	var width []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i < len(align) && align[i] == 'r' {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(p.w, strings.TrimRight(b.String(), " "))
	}
}
