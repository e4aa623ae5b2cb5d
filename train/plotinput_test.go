package train

import (
	"reflect"
	"testing"
)

func TestCurveLabels(t *testing.T) {
	for _, c := range []struct {
		paths, want []string
	}{
		{[]string{"runs/ablation/full/metrics.jsonl", "runs/ablation/sltrain/metrics.jsonl"}, []string{"full", "sltrain"}},
		{[]string{"runs/a/x/metrics.jsonl", "runs/b/x/metrics.jsonl", "runs/c/metrics.jsonl"}, []string{"runs/a/x", "runs/b/x", "c"}},
		{[]string{"/metrics.jsonl"}, []string{"metrics.jsonl"}},
	} {
		if got := CurveLabels(c.paths); !reflect.DeepEqual(got, c.want) {
			t.Errorf("CurveLabels(%q) = %q, want %q", c.paths, got, c.want)
		}
	}
}
