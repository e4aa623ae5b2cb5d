// Package nexttoken builds the causal-LM training loss that both ways into
// slc add to a forward graph: the LLaMA config frontend (frontend.BuildLlama)
// and the ONNX importer (onnx.AddCausalLM). It imports only ir, so either
// frontend may use it without an import cycle between them.
package nexttoken

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// Loss adds the next-token loss to b's graph and returns its scalar value:
// the mean cross-entropy of pred [B, L−1, V] (the predictions of positions
// 0..L−2) against the labels ids[:, 1:] of the i64[B, L] token input ids.
// With lossMask it adds the data input "loss_mask" (f32[B, L−1]) and the
// loss is HF's CrossEntropyLoss(ignore_index=-100) over the kept positions:
// Σ mask·CE / Σ mask, summed and divided in f32 and rounded once to pred's
// dtype. Its nodes are in the scope "loss"; b.Scope is "" afterwards.
func Loss(b *ir.Builder, pred, ids string, lossMask bool) string {
	if b.Err() != nil {
		return ""
	}
	pt := b.Type(pred)
	if pt.Rank() != 3 {
		b.Fail(fmt.Errorf("next-token loss: predictions %v, want [B, L-1, V]", pt))
		return ""
	}
	bs, seq, v := pt.Shape[0], pt.Shape[1]+1, pt.Shape[2]
	dt := pt.DType
	b.Scope = "loss"
	n := bs * (seq - 1)
	shifted := b.Reshape(pred, n, v)
	labels := b.Reshape(b.Slice(ids, 1, 1, seq), n)
	ce := b.Op("SoftmaxCrossEntropy", nil, shifted, labels)
	var loss string
	if lossMask {
		mask := b.Reshape(b.AddInput("loss_mask", ir.T(ir.F32, bs, seq-1), ir.Data, nil), n)
		cef := ce
		if dt != ir.F32 {
			cef = b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, ce)
		}
		loss = b.Div(b.Reduce("ReduceSum", b.Mul(cef, mask), false, 0), b.Reduce("ReduceSum", mask, false, 0))
		if dt != ir.F32 {
			loss = b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, loss)
		}
	} else {
		loss = b.Reduce("ReduceMean", ce, false, 0)
	}
	b.Scope = ""
	return loss
}
