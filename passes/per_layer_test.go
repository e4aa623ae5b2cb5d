package passes

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// compilePerLayer runs the training passes (and, with plan, the rest of the
// pipeline) on the SLTrain tiny LLaMA with optimizer opt.
func compilePerLayer(t *testing.T, opt string, list string, accumulate bool) (*ir.Module, *State) {
	t.Helper()
	m := tinyLlama(t, true)
	o := DefaultOptions()
	o.Rank, o.SpRatio, o.Optimizer, o.Accumulate = 4, 0.1, opt, accumulate
	if opt == "sgd" || opt == "sgd_per_layer" {
		o.Beta1 = 0.9
	}
	s := &State{Module: m, Options: o, Verify: true}
	ps, err := Select(list)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(s, ps); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// TestPerLayerMatchesWholeModel runs three updates of the tiny LLaMA (f64,
// in the reference interpreter) with each optimizer as train_step + update
// and per layer: train_step alone for one micro-batch per update, and with
// accumulation (two micro-batches) train_step then train_update. The
// parameters and states are equal, bit for bit, after every update, and so
// is the reported gradient norm.
func TestPerLayerMatchesWholeModel(t *testing.T) {
	const list = "autodiff,optimizer,per-layer,programs"
	for _, c := range []struct {
		opt   string
		micro int
	}{{"adamw", 1}, {"adam", 1}, {"sgd", 1}, {"adafactor", 1}, {"adam8bit", 1}, {"adamw", 2}, {"adam8bit", 2}} {
		opt := c.opt
		t.Run(fmt.Sprintf("%s-%d", opt, c.micro), func(t *testing.T) {
			wm, _ := compilePerLayer(t, opt, list, false)
			pm, _ := compilePerLayer(t, opt+PerLayerSuffix, list, c.micro > 1)
			wts, up := wm.Graph("train_step"), wm.Graph("update")
			pts, pacc := pm.Graph("train_step"), (*ir.Graph)(nil)
			if pm.Graph("update") != nil {
				t.Fatal("the per-layer module keeps an update graph")
			}
			if c.micro > 1 {
				pacc, pts = pts, pm.Graph(TrainUpdate)
				if pts == nil || len(pacc.InputsWithRole(ir.GradAccum)) == 0 {
					t.Fatal("no train_update, or no accumulators in train_step")
				}
			} else if len(pts.InputsWithRole(ir.GradAccum)) > 0 || pm.Graph(TrainUpdate) != nil {
				t.Fatal("one micro-batch per update: the per-layer module keeps gradient accumulators")
			}
			ws := tinyState(t, wts, 3)
			opts, err := interp.InitState(up)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range opts {
				if ws[k] == nil {
					ws[k] = v
				}
			}
			ps := map[string]*interp.Tensor{}
			for _, in := range append(slices.Clone(pts.Inputs), pm.Graph("train_step").Inputs...) {
				if in.Role.IsState() {
					if ws[in.Name] == nil {
						t.Fatalf("per-layer state %q is not the whole-model run's", in.Name)
					}
					ps[in.Name] = ws[in.Name]
				}
			}
			rng := ir.NewRNG(7)
			for step := 1; step <= 3; step++ {
				lr, wd := 0.01*float64(step), 0.1
				scale := scalarT(ir.F64, 1/float64(c.micro))
				var ids *interp.Tensor
				for micro := 0; micro < c.micro; micro++ {
					ids = randomIDs(rng, wts)
					ws["input_ids"], ws["grad_scale"] = ids, scale
					out, err := interp.Run(wts, ws)
					if err != nil {
						t.Fatal(err)
					}
					applyUpdates(wts, ws, out)
					if micro < c.micro-1 { // per layer: the same micro-batch accumulated
						pin := map[string]*interp.Tensor{"input_ids": ids, "grad_scale": scale}
						for k, v := range ps {
							pin[k] = v
						}
						pout, err := interp.Run(pacc, pin)
						if err != nil {
							t.Fatal(err)
						}
						applyUpdates(pacc, ps, pout)
					}
				}
				uin := map[string]*interp.Tensor{"lr": scalarT(ir.F64, lr), "step": scalarT(ir.F64, float64(step)),
					"weight_decay": scalarT(ir.F64, wd), "max_grad_norm": scalarT(ir.F64, math.Inf(1))}
				for k, v := range ws {
					uin[k] = v
				}
				uout, err := interp.Run(up, uin)
				if err != nil {
					t.Fatal(err)
				}
				applyUpdates(up, ws, uout)

				pin := map[string]*interp.Tensor{"input_ids": ids, "grad_scale": scale, "lr": scalarT(ir.F64, lr),
					"step": scalarT(ir.F64, float64(step)), "weight_decay": scalarT(ir.F64, wd), "grad_coef": scalarT(ir.F64, 1)}
				for k, v := range ps {
					pin[k] = v
				}
				for _, in := range pts.Inputs {
					if in.Role == ir.Scalar && pin[in.Name] == nil {
						t.Fatalf("per-layer train_step takes an unknown scalar %q", in.Name)
					}
				}
				pout, err := interp.Run(pts, pin)
				if err != nil {
					t.Fatal(err)
				}
				applyUpdates(pts, ps, pout)
				if a, b := uout["grad_norm"].F[0], pout["grad_norm"].F[0]; a != b || a == 0 {
					t.Fatalf("step %d: grad_norm %v per layer, %v whole-model", step, b, a)
				}
				for name, v := range ps {
					if !slices.Equal(v.F, ws[name].F) {
						t.Fatalf("step %d: %s differs from the whole-model update", step, name)
					}
				}
			}
		})
	}
}

// TestPerLayerPlan: after the whole pipeline, the per-layer module holds no
// gradient (the memory budget's gradients are 0), and parameters are
// updated inside the backward: lm_head's update runs before the
// embedding's gradient (the backward's last) is made, and every update is
// written in place.
func TestPerLayerPlan(t *testing.T) {
	m, s := compilePerLayer(t, "adamw_per_layer", "autodiff,optimizer,per-layer,programs,fold,algebra,cse,dce,fuse-groups,memory-plan", false)
	if s.Memory.Gradients != 0 {
		t.Errorf("the per-layer budget holds %d bytes of gradients", s.Memory.Gradients)
	}
	g, plan := m.Graph("train_step"), s.Plans["train_step"]
	step := map[string]int{}
	for _, gr := range s.Groups["train_step"] {
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				step[o.Name] = gr.ID
			}
		}
	}
	var head, embedGrad = -1, -1
	for _, n := range g.Nodes {
		if n.Op == "ScatterAdd" && n.Name == "model.embed_tokens" {
			embedGrad = step[n.Outputs[0].Name]
		}
	}
	updates := 0
	for _, o := range g.Outputs {
		in := g.Input(o.Updates)
		if in == nil || in.Role != ir.Param {
			continue
		}
		updates++
		if o.Updates == "lm_head.weight" {
			head = step[o.Value]
		}
		if b := plan.Buffers[o.Value]; b.Kind != InPlace {
			t.Errorf("%s is not updated in place (%v)", o.Updates, b.Kind)
		}
	}
	if updates != len(trainable(g)) {
		t.Errorf("%d parameter updates in train_step, %d parameters", updates, len(trainable(g)))
	}
	if head < 0 || embedGrad < 0 || head >= embedGrad {
		t.Errorf("lm_head's update at step %d, the embedding's gradient at %d: the updates are not inside the backward", head, embedGrad)
	}
}
