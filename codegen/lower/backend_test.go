package lower

import (
	"strings"
	"testing"
)

// NewEmitter picks the backend once from Options.Device: the CPU's for ""
// and "cpu", codegen/gpu's for "cuda", and refuses any other device.
func TestBackendChosenOnce(t *testing.T) {
	for _, dev := range []string{"", "cpu"} {
		e := newTestEmitter(t, Options{Device: dev})
		if _, ok := e.be.(cpuBackend); !ok || e.dev != nil || e.tr != (traits{chunkedXent: true}) {
			t.Errorf("device %q: backend %T, traits %+v, device pieces %v", dev, e.be, e.tr, e.dev != nil)
		}
	}
	tm, m := gpuTarget(t, "sm_80")
	e, err := NewEmitter(m, tm, Options{Device: "cuda"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Dispose()
	if _, ok := e.be.(gpuBackend); !ok || e.dev == nil || !e.tr.blockRows || !e.tr.coalesce || !e.tr.splitSums || !e.tr.computeConsts || e.tr.chunkedXent {
		t.Errorf("cuda: backend %T, traits %+v", e.be, e.tr)
	}
	if _, err := NewEmitter(m, tm, Options{Device: "tpu"}); err == nil || !strings.Contains(err.Error(), `device "tpu": want cpu or cuda`) {
		t.Errorf("device tpu: %v", err)
	}
}
