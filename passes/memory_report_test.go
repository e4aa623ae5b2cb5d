package passes

import (
	"bytes"
	"testing"
)

func TestWriteMemoryReport(t *testing.T) {
	const mb = 1 << 20
	full := MemoryUsage{Params: 221 * mb, Gradients: 221 * mb, OptState: 442 * mb, Data: 16 << 10,
		Activations: 1552 * mb, ActivationsNoReuse: 4187 * mb, TransientGrads: 500 * mb}
	sl := MemoryUsage{Params: 171*mb + mb/2, Gradients: 166 * mb, OptState: 332 * mb, Data: 16 << 10,
		Activations: 1552 * mb, ActivationsNoReuse: 4535 * mb, TransientGrads: 500 * mb}
	var b bytes.Buffer
	if err := WriteMemoryReport(&b, NamedUsage{"--peft full", full}, NamedUsage{"--peft sltrain", sl}); err != nil {
		t.Fatal(err)
	}
	want := `memory (MiB)                 --peft full  --peft sltrain
parameters                        221.00          171.50
gradients                         221.00          166.00
optimizer state                   442.00          332.00
activations (planned)            1552.00         1552.00
  of which backward at peak       500.00          500.00
activations (no reuse)           4187.00         4535.00
data inputs                         0.02            0.02
total                            2436.02         2221.52
`
	if got := b.String(); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if full.Total() != full.Params+full.Gradients+full.OptState+full.Data+full.Activations {
		t.Fatal("Total must add persistent memory and the planned arena")
	}
}
