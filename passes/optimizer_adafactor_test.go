package passes

import (
	"fmt"
	"math"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// adafactorRef is Adafactor written from Shazeer & Stern (2018, Algorithms
// 4 and 5, with update clipping and the optional first moment of section
// 7) under HF transformers' settings of the seed (fixed lr, no parameter
// scaling, eps1 1e-30, decay −0.8, clip threshold 1), in float64, for a
// rows×cols matrix (cols = 0: a vector). It returns, per step, the
// parameter and the states under slc's names.
func adafactorRef(p []float64, rows, cols int, grads [][]float64, coefs []float64, lr, wd, beta1 float64, name string) []map[string][]float64 {
	n := len(p)
	p = append([]float64(nil), p...)
	R, C, V, M := make([]float64, rows), make([]float64, cols), make([]float64, n), make([]float64, n)
	var out []map[string][]float64
	for t := 1; t <= len(grads); t++ {
		rho := 1 - math.Pow(float64(t), -0.8) // β̂2t
		u := make([]float64, n)
		g := make([]float64, n)
		for i := range g {
			g[i] = grads[t-1][i] * coefs[t-1]
		}
		rec := map[string][]float64{}
		if cols > 0 {
			// R_t = ρR + (1−ρ)(G²+ε1)·1_m/m (row means), C_t likewise over rows.
			for i := 0; i < rows; i++ {
				var s float64
				for j := 0; j < cols; j++ {
					s += g[i*cols+j]*g[i*cols+j] + 1e-30
				}
				R[i] = rho*R[i] + (1-rho)*s/float64(cols)
			}
			for j := 0; j < cols; j++ {
				var s float64
				for i := 0; i < rows; i++ {
					s += g[i*cols+j]*g[i*cols+j] + 1e-30
				}
				C[j] = rho*C[j] + (1-rho)*s/float64(rows)
			}
			// V̂ = R·C / mean(R) (the rank-1 factorization, normalised by the row mean).
			var rm float64
			for _, r := range R {
				rm += r
			}
			rm /= float64(rows)
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					u[i*cols+j] = g[i*cols+j] / math.Sqrt(R[i]/rm*C[j])
				}
			}
			rec[name+".exp_avg_sq_row"] = append([]float64(nil), R...)
			rec[name+".exp_avg_sq_col"] = append([]float64(nil), C...)
		} else {
			for i := range V {
				V[i] = rho*V[i] + (1-rho)*(g[i]*g[i]+1e-30)
				u[i] = g[i] / math.Sqrt(V[i])
			}
			rec[name+".exp_avg_sq"] = append([]float64(nil), V...)
		}
		// Û = U / max(1, RMS(U)/d), d = 1.
		var ss float64
		for _, x := range u {
			ss += x * x
		}
		d := math.Max(1, math.Sqrt(ss/float64(n)))
		for i := range u {
			u[i] = lr * u[i] / d
			if beta1 > 0 {
				M[i] = beta1*M[i] + (1-beta1)*u[i]
				u[i] = M[i]
			}
			p[i] = p[i] - wd*lr*p[i] - u[i]
		}
		if beta1 > 0 {
			rec[name+".exp_avg"] = append([]float64(nil), M...)
		}
		rec[name] = append([]float64(nil), p...)
		out = append(out, rec)
	}
	return out
}

// TestAdafactorMatchesReference: three updates of the f64 Adafactor graph
// (a factored matrix and a full vector, clipping and weight decay, with
// and without β1) equal adafactorRef to 1e-12; the states are f32 for bf16
// parameters.
func TestAdafactorMatchesReference(t *testing.T) {
	for _, beta1 := range []float64{0, 0.9} {
		t.Run(fmt.Sprintf("beta1-%g", beta1), func(t *testing.T) {
			oc := newOptCase(ir.F64, 7)
			got := oc.run(t, optimizerModule(t, ir.F64, "adafactor", beta1))
			// The global clipping coefficient, as the reference gets it.
			var coefs []float64
			for _, g := range oc.grads {
				var ss float64
				for _, v := range g {
					for _, x := range v {
						ss += x * x
					}
				}
				coefs = append(coefs, math.Min(1, oc.maxNorm/(math.Sqrt(ss)+1e-6)))
			}
			if coefs[0] >= 1 {
				t.Fatal("clipping is not exercised")
			}
			steps := func(name string, rows, cols int) []map[string][]float64 {
				var gs [][]float64
				for _, g := range oc.grads {
					gs = append(gs, g[name])
				}
				return adafactorRef(oc.params[name], rows, cols, gs, coefs, oc.lr, oc.wd, beta1, name)
			}
			w, n := steps("w", 64, 32), steps("n", 64, 0)
			for i := range got {
				for k, v := range n[i] {
					w[i][k] = v
				}
				w[i]["grad_norm"] = got[i]["grad_norm"]
			}
			compareSteps(t, got, w, 1e-12)
		})
	}
	up := optimizerModule(t, ir.BF16, "adafactor", 0.9)
	for _, in := range up.InputsWithRole(ir.OptState) {
		if in.Type.DType != ir.F32 {
			t.Errorf("bf16 Adafactor state %s is %v, want f32 (HF computes bf16 parameters' steps in f32)", in.Name, in.Type.DType)
		}
	}
}
