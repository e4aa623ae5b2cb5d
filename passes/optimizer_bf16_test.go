package passes

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// torchAdamW runs tools/torchref's bf16 AdamW and clip_grad_norm_ (torch ≥
// 2.1's CUDA AdamW and clip_grad_norm_ on bf16 tensors, op by op, written
// with PyTorch ops because the CPU's own bf16 kernels round Python scalars
// to bf16) from the given values and gradients, and returns per step the
// grad norm, the parameters and both moments.
const torchAdamW = `
import json, sys, torch
sys.path.insert(0, sys.argv[2])
from precision import Bf16AdamW, clip_grad_norm_bf16
d = json.load(open(sys.argv[1]))
bf = lambda v, s: torch.tensor(v, dtype=torch.float64).to(torch.bfloat16).reshape(s)
ps = {k: bf(v, d["shapes"][k]).requires_grad_() for k, v in d["params"].items()}
names = sorted(ps)
opt = Bf16AdamW([ps[k] for k in names], lr=d["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=d["wd"])
out = []
for grads in d["grads"]:
    for k in names:
        ps[k].grad = bf(grads[k], d["shapes"][k])
    norm = clip_grad_norm_bf16([ps[k] for k in names], d["max_norm"])
    opt.step()
    rec = {"grad_norm": float(norm)}
    for k in names:
        st = opt.state[ps[k]]
        rec[k] = ps[k].detach().double().flatten().tolist()
        rec[k + ".exp_avg"] = st["exp_avg"].double().flatten().tolist()
        rec[k + ".exp_avg_sq"] = st["exp_avg_sq"].double().flatten().tolist()
    out.append(rec)
print(json.dumps(out))
`

// TestBF16UpdateMatchesTorch: three AdamW steps of the bf16 update graph,
// through the interpreter, equal tools/torchref's (parameters, both moments,
// the clipped grad norm) bit for bit, with weight decay and clipping that
// bites.
func TestBF16UpdateMatchesTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("no PyTorch at /usr/bin/python3")
	}
	bld := ir.NewBuilder("forward")
	x := bld.AddInput("x", ir.T(ir.BF16, 2, 32), ir.Data, nil)
	w := bld.AddInput("w", ir.T(ir.BF16, 64, 32), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.5, Seed: 1})
	n := bld.AddInput("n", ir.T(ir.BF16, 64), ir.Param, &ir.Init{Kind: ir.InitOnes})
	y := bld.Mul(bld.Op("Linear", nil, x, w), n)
	bld.Output("loss", bld.Reduce("ReduceMean", bld.Mul(y, y), false, 0, 1))
	bld.Output("logits", y)
	if err := bld.Err(); err != nil {
		t.Fatal(err)
	}
	m := &ir.Module{Graphs: []*ir.Graph{bld.G}}
	s := &State{Module: m, Options: DefaultOptions(), Verify: true}
	if err := Run(s, trainingPasses(t)); err != nil {
		t.Fatal(err)
	}
	up := m.Graph("update")
	st, err := interp.InitState(up)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 9))
	bf := func(x float64) float64 { return interp.RoundTo(ir.BF16, x) }
	names := []string{"n", "w"}
	shapes, params := map[string][]int{}, map[string][]float64{}
	for _, k := range names {
		shapes[k] = st[k].Type.Shape
		for i := range st[k].F {
			st[k].F[i] = bf(r.NormFloat64())
		}
		params[k] = append([]float64(nil), st[k].F...)
	}
	const lr, wd, maxNorm = 1e-2, 0.1, 0.5
	var grads []map[string][]float64
	for range 3 {
		g := map[string][]float64{}
		for _, k := range names {
			for range st[k].F {
				g[k] = append(g[k], bf(r.NormFloat64()*0.3))
			}
		}
		grads = append(grads, g)
	}
	in, _ := json.Marshal(map[string]any{"params": params, "shapes": shapes, "grads": grads, "lr": lr, "wd": wd, "max_norm": maxNorm})
	path := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(path, in, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := exec.Command(py, "-c", torchAdamW, path, "../tools/torchref").Output()
	if err != nil {
		t.Fatalf("torch: %v", err)
	}
	var want []map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for step, g := range grads {
		for _, k := range names {
			copy(st[k+".grad"].F, g[k])
		}
		st["lr"], st["step"], st["weight_decay"], st["max_grad_norm"] = scalarT(ir.F64, lr), scalarT(ir.F64, float64(step+1)), scalarT(ir.F64, wd), scalarT(ir.F64, maxNorm)
		out, err := interp.Run(up, st)
		if err != nil {
			t.Fatal(err)
		}
		if got, w := out["grad_norm"].F[0], want[step]["grad_norm"].(float64); got != w {
			t.Errorf("step %d: grad_norm %v, torch %v", step+1, got, w)
		}
		applyUpdates(up, st, out)
		for _, k := range names {
			for _, name := range []string{k, k + ".exp_avg", k + ".exp_avg_sq"} {
				w := want[step][name].([]any)
				for i, v := range st[name].F {
					if tv := w[i].(float64); v != tv {
						t.Errorf("step %d: %s[%d] = %v, torchref %v", step+1, name, i, v, tv)
						break
					}
				}
			}
		}
	}
}
