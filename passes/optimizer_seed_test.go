package passes

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// optimizerModule compiles a small forward (a 64×32 matrix w and a vector
// n of 64, so that both Adafactor's factored and full second moments
// occur) through the training passes with the given optimizer and β1.
func optimizerModule(t testing.TB, dt ir.DType, opt string, beta1 float64) *ir.Graph {
	t.Helper()
	bld := ir.NewBuilder("forward")
	x := bld.AddInput("x", ir.T(dt, 2, 32), ir.Data, nil)
	w := bld.AddInput("w", ir.T(dt, 64, 32), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.5, Seed: 1})
	n := bld.AddInput("n", ir.T(dt, 64), ir.Param, &ir.Init{Kind: ir.InitOnes})
	y := bld.Mul(bld.Op("Linear", nil, x, w), n)
	bld.Output("loss", bld.Reduce("ReduceMean", bld.Mul(y, y), false, 0, 1))
	bld.Output("logits", y)
	if err := bld.Err(); err != nil {
		t.Fatal(err)
	}
	m := &ir.Module{Graphs: []*ir.Graph{bld.G}}
	o := DefaultOptions()
	o.Optimizer, o.Beta1 = opt, beta1
	s := &State{Module: m, Options: o, Verify: true}
	if err := Run(s, trainingPasses(t)); err != nil {
		t.Fatal(err)
	}
	if m.Meta["optimizer"] != opt {
		t.Fatalf("module metadata optimizer %q, want %q", m.Meta["optimizer"], opt)
	}
	return m.Graph("update")
}

// optCase is a run of updates: per-step gradients for "w" and "n", lr,
// weight decay and max_grad_norm (clipping bites at 0.5).
type optCase struct {
	params  map[string][]float64
	shapes  map[string][]int
	grads   []map[string][]float64
	lr, wd  float64
	maxNorm float64
}

// newOptCase draws parameters and three steps of gradients, rounded to dt.
func newOptCase(dt ir.DType, seed uint64) optCase {
	r := rand.New(rand.NewPCG(seed, 9))
	rd := func(x float64) float64 { return interp.RoundTo(dt, x) }
	c := optCase{params: map[string][]float64{}, shapes: map[string][]int{"w": {64, 32}, "n": {64}}, lr: 1e-2, wd: 0.1, maxNorm: 0.5}
	for k, s := range c.shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		for range n {
			c.params[k] = append(c.params[k], rd(r.NormFloat64()))
		}
	}
	for range 3 {
		g := map[string][]float64{}
		for _, k := range []string{"n", "w"} {
			for range c.params[k] {
				g[k] = append(g[k], rd(r.NormFloat64()*0.3))
			}
		}
		c.grads = append(c.grads, g)
	}
	return c
}

// run steps the update graph through the interpreter and returns, per step,
// the grad norm and every parameter and optimizer state.
func (c optCase) run(t *testing.T, up *ir.Graph) []map[string][]float64 {
	t.Helper()
	st, err := interp.InitState(up)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.params {
		copy(st[k].F, v)
	}
	var out []map[string][]float64
	for step, g := range c.grads {
		for k, v := range g {
			copy(st[k+".grad"].F, v)
		}
		st["lr"], st["step"], st["weight_decay"], st["max_grad_norm"] = scalarT(ir.F64, c.lr), scalarT(ir.F64, float64(step+1)), scalarT(ir.F64, c.wd), scalarT(ir.F64, c.maxNorm)
		res, err := interp.Run(up, st)
		if err != nil {
			t.Fatal(err)
		}
		applyUpdates(up, st, res)
		rec := map[string][]float64{"grad_norm": res["grad_norm"].F}
		for _, in := range up.Inputs {
			if in.Role == ir.Param || in.Role == ir.OptState {
				rec[in.Name] = append([]float64(nil), st[in.Name].F...)
			}
		}
		out = append(out, rec)
	}
	return out
}

// torchOptimizers runs torch.optim (float64) or tools/torchref's bf16
// optimizers on the case and prints per step the grad norm, the parameters
// and their states under slc's names ("P.<torch state key>").
const torchOptimizers = `
import json, sys, torch
sys.path.insert(0, sys.argv[2])
from precision import Bf16AdamW, Bf16Adam, Bf16SGD, clip_grad_norm_bf16
d = json.load(open(sys.argv[1]))
bf16 = d["dtype"] == "bf16"
dt = torch.bfloat16 if bf16 else torch.float64
mk = lambda v, s: torch.tensor(v, dtype=torch.float64).to(dt).reshape(s)
ps = {k: mk(v, d["shapes"][k]).requires_grad_() for k, v in d["params"].items()}
names = sorted(ps)
pl = [ps[k] for k in names]
o = d["opt"]
kw = dict(lr=d["lr"], weight_decay=d["wd"])
if o == "sgd":
    opt = (Bf16SGD if bf16 else torch.optim.SGD)(pl, momentum=d["beta1"], **kw)
elif o == "adam":
    opt = (Bf16Adam if bf16 else torch.optim.Adam)(pl, **kw)
else:
    opt = (Bf16AdamW if bf16 else torch.optim.AdamW)(pl, **kw)
out = []
for grads in d["grads"]:
    for k in names:
        ps[k].grad = mk(grads[k], d["shapes"][k])
    if bf16:
        norm = clip_grad_norm_bf16(pl, d["max_norm"])
    else:
        norm = torch.nn.utils.clip_grad_norm_(pl, d["max_norm"])
    opt.step()
    rec = {"grad_norm": [float(norm)]}
    for k in names:
        rec[k] = ps[k].detach().double().flatten().tolist()
        for sk, sv in opt.state[ps[k]].items():
            if sk != "step" and sv is not None:
                rec[k + "." + sk] = sv.double().flatten().tolist()
    out.append(rec)
print(json.dumps(out))
`

// TestOptimizersMatchTorch: three updates (clipping that bites, weight
// decay) of adam, adamw and sgd (momentum 0 and 0.9) through the
// interpreter equal PyTorch's torch.optim in float64 to 1e-12, and
// tools/torchref's bf16 foreach emulation bit for bit in pure bf16.
func TestOptimizersMatchTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("no PyTorch at /usr/bin/python3")
	}
	for _, dt := range []ir.DType{ir.F64, ir.BF16} {
		for _, c := range []struct {
			opt   string
			beta1 float64
		}{{"adam", 0.9}, {"adamw", 0.9}, {"sgd", 0}, {"sgd", 0.9}} {
			t.Run(fmt.Sprintf("%s-%s-%g", dt, c.opt, c.beta1), func(t *testing.T) {
				oc := newOptCase(dt, 5)
				got := oc.run(t, optimizerModule(t, dt, c.opt, c.beta1))
				in, _ := json.Marshal(map[string]any{"params": oc.params, "shapes": oc.shapes, "grads": oc.grads, "lr": oc.lr, "wd": oc.wd,
					"max_norm": oc.maxNorm, "opt": c.opt, "beta1": c.beta1, "dtype": dt.String()})
				path := filepath.Join(t.TempDir(), "in.json")
				if err := os.WriteFile(path, in, 0o644); err != nil {
					t.Fatal(err)
				}
				raw, err := exec.Command(py, "-c", torchOptimizers, path, "../tools/torchref").Output()
				if err != nil {
					t.Fatalf("torch: %v", err)
				}
				var want []map[string][]float64
				if err := json.Unmarshal(raw, &want); err != nil {
					t.Fatal(err)
				}
				tol := 1e-12
				if dt == ir.BF16 {
					tol = 0
				}
				compareSteps(t, got, want, tol)
			})
		}
	}
}

// compareSteps wants the same names in got and want at every step and
// values within tol relative (0: bit for bit).
func compareSteps(t *testing.T, got, want []map[string][]float64, tol float64) {
	t.Helper()
	for step := range want {
		var gn, wn []string
		for k := range got[step] {
			gn = append(gn, k)
		}
		for k := range want[step] {
			wn = append(wn, k)
		}
		sort.Strings(gn)
		sort.Strings(wn)
		if strings.Join(gn, ",") != strings.Join(wn, ",") {
			t.Fatalf("step %d: states %v, reference %v", step+1, gn, wn)
		}
		for k, w := range want[step] {
			g := got[step][k]
			for i := range w {
				if d := math.Abs(g[i] - w[i]); d > tol*math.Max(1, math.Abs(w[i])) || math.IsNaN(g[i]) {
					t.Errorf("step %d: %s[%d] = %.17g, reference %.17g", step+1, k, i, g[i], w[i])
					break
				}
			}
		}
	}
}
