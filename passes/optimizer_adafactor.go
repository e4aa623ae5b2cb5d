package passes

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// Adafactor (Shazeer & Stern 2018) with the seed's settings, HF
// transformers' Adafactor(lr, eps=(1e-30, 1e-3), clip_threshold=1.0,
// decay_rate=−0.8, beta1=None unless --beta1 > 0, weight_decay,
// relative_step=False, scale_parameter=False, warmup_init=False): a fixed
// learning rate, no parameter scaling (so eps2 = 1e-3 is not used). With
// t = step:
//
//	β2t = 1 − t^−0.8
//	u = g² + 1e-30
//	≥ 2-D (factored over the last two axes):
//	  R = β2t·R + (1−β2t)·mean_last(u)            "P.exp_avg_sq_row"  [..., rows]
//	  C = β2t·C + (1−β2t)·mean_rows(u)            "P.exp_avg_sq_col"  [..., cols]
//	  u = g · rsqrt(R / mean_last(R))[..., :, None] · rsqrt(C)[..., None, :]
//	1-D:
//	  V = β2t·V + (1−β2t)·u                       "P.exp_avg_sq"
//	  u = g · rsqrt(V)
//	u = u / max(1, RMS(u) / 1.0)                  update clipping, RMS = ‖u‖/√n
//	u = lr·u
//	β1 > 0: m = β1·m + (1−β1)·u; u = m           "P.exp_avg"
//	p = p − wd·lr·p − u
//
// Every state is in the arithmetic dtype (f32; f64 for f64 models), also for
// bf16 parameters, whose step HF computes in f32 before copying back.

// Adafactor's fixed settings in the seed.
const (
	adafactorEps1      = 1e-30
	adafactorDecayRate = -0.8
	adafactorClip      = 1.0
)

func checkAdafactor(o Options) error {
	if !(o.Beta1 >= 0 && o.Beta1 < 1) {
		return &OptionError{Option: "beta1", Msg: fmt.Sprintf("Adafactor β1 (--beta1) must be in [0, 1) (0: no first moment), got %v", o.Beta1)}
	}
	return nil
}

func describeAdafactor(o Options) string {
	b1 := "no first moment"
	if o.Beta1 > 0 {
		b1 = fmt.Sprintf("β1=%g", o.Beta1)
	}
	return fmt.Sprintf("factored second moment, decay rate %g, eps 1e-30, update clipping %g, %s, no relative step or parameter scaling", adafactorDecayRate, adafactorClip, b1)
}

func adafactorStep(u *updateBuilder, P *ir.Input, p, g string) error {
	b, ct := u.b, u.ct
	shape := P.Type.Shape
	r := len(shape)
	beta2t := u.toCT(b.Sub(u.c64(1), b.Op("Pow", nil, u.step, u.c64(adafactorDecayRate))))
	oneMinus := b.Sub(u.c(1), beta2t)
	sq := b.Add(b.Mul(g, g), u.c(adafactorEps1))
	ema := func(state, x string) string {
		return b.Add(b.Mul(state, beta2t), b.Mul(x, oneMinus))
	}
	var upd string
	if r >= 2 {
		rowShape := append([]int(nil), shape[:r-1]...)
		colShape := append(append([]int(nil), shape[:r-2]...), shape[r-1])
		row := u.optState(P, ".exp_avg_sq_row", ir.Type{DType: ct, Shape: rowShape})
		col := u.optState(P, ".exp_avg_sq_col", ir.Type{DType: ct, Shape: colShape})
		row1 := ema(row, b.Reduce("ReduceMean", sq, false, r-1))
		col1 := ema(col, b.Reduce("ReduceMean", sq, false, r-2))
		u.set(row, row1)
		u.set(col, col1)
		// r_factor = rsqrt(R / mean(R, -1, keepdim)) as [..., rows, 1];
		// c_factor = rsqrt(C) as [..., 1, cols].
		rf := b.Unary("Rsqrt", b.Div(row1, b.Reduce("ReduceMean", row1, true, r-2)))
		rf = b.Reshape(rf, append(append([]int(nil), rowShape...), 1)...)
		cf := b.Unary("Rsqrt", col1)
		cf = b.Reshape(cf, append(append(append([]int(nil), shape[:r-2]...), 1), shape[r-1])...)
		upd = b.Mul(b.Mul(rf, cf), g)
	} else {
		v := u.optState(P, ".exp_avg_sq", ir.Type{DType: ct, Shape: shape})
		v1 := ema(v, sq)
		u.set(v, v1)
		upd = b.Mul(b.Unary("Rsqrt", v1), g)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	rms := b.Div(b.Unary("Sqrt", sumSquares(b, upd)), u.c(math.Sqrt(float64(n))))
	upd = b.Div(upd, b.Op("Max", nil, b.Div(rms, u.c(adafactorClip)), u.c(1)))
	lr := u.toCT(u.lr)
	upd = b.Mul(upd, lr)
	if b1 := u.o.Beta1; b1 > 0 {
		m := u.optState(P, ".exp_avg", ir.Type{DType: ct, Shape: shape})
		upd = b.Add(b.Mul(m, u.c(b1)), b.Mul(upd, u.c(1-b1)))
		u.set(m, upd)
	}
	pf := u.toCT(p)
	pw := b.Add(pf, b.Mul(pf, u.toCT(b.Unary("Neg", b.Mul(u.wd, u.lr)))))
	u.set(p, b.Sub(pw, upd))
	return nil
}
