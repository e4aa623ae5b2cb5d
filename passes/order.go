package passes

import (
	"fmt"
	"slices"
)

// constraint says that pass a must run before pass b, and why.
type constraint struct {
	a, b string
	why  string
}

// passOrder holds the pipeline's ordering rules, as Go's
// cmd/compile/internal/ssa/compile.go keeps its passOrder: Pipeline is
// checked against it when the package loads (a reordered Pipeline panics at
// init, so every test and every build of slc fails at once), and CheckOrder
// checks any other list the same way.
var passOrder = []constraint{
	{"sltrain-fuse", "autodiff", "autodiff differentiates the fused LowRankSparseAdd; fused later, train_step would keep the dense weight and its gradient"},
	{"autodiff", "mixed-precision", "mixed-precision reads the bf16 copies of saved activations that autodiff routes the backward through"},
	{"autodiff", "optimizer", "the update is built over the gradient accumulators that train_step fills"},
	{"autodiff", "programs", "autodiff derives train_step from forward, which programs drops"},
	{"optimizer", "programs", "programs fixes the graph order (train_step, update, eval, infer)"},
	{"fold", "algebra", "algebra's neutral-element rules (x·1, x+0) match the uniform Consts fold leaves"},
	{"fold", "dce", "a folded node's inputs are left unread for dce"},
	{"algebra", "dce", "a replaced node is left unread for dce"},
	{"cse", "dce", "a merged node is left unread for dce"},
	{"mixed-precision", "fuse-groups", "the kernels are formed from the final graphs"},
	{"programs", "fuse-groups", "the kernels are formed from the final graphs (eval and infer included)"},
	{"dce", "fuse-groups", "the kernels are formed from the final graphs; memory-plan refuses a graph changed after fuse-groups"},
	{"autodiff", "recompute", "recompute copies the forward values that autodiff's backward reads"},
	{"cse", "recompute", "cse would merge the recomputed copies back into the values they replace"},
	{"dce", "recompute", "recompute copies the final forward: values dce would remove are not copied"},
	{"recompute", "fuse-groups", "the kernels are formed from the final graphs, the recomputed copies included"},
	{"fuse-groups", "fuse-linear-xent", "fuse-linear-xent merges groups that fuse-groups formed"},
	{"fuse-groups", "memory-plan", "liveness is computed over the group schedule"},
	{"fuse-linear-xent", "memory-plan", "the plan must be over the final groups, the chunked loss head included"},
}

func init() {
	if err := checkPipeline(Pipeline); err != nil {
		panic("passes: " + err.Error())
	}
}

// checkPipeline checks a full pipeline: every pass named once, every
// constraint about passes it holds and met, and the required passes present.
func checkPipeline(list []Pass) error {
	names := make([]string, len(list))
	for i, p := range list {
		if slices.Contains(names[:i], p.Name) {
			return fmt.Errorf("pass %s appears twice in the pipeline", p.Name)
		}
		names[i] = p.Name
	}
	for _, c := range passOrder {
		for _, n := range []string{c.a, c.b} {
			if !slices.Contains(names, n) {
				return fmt.Errorf("ordering rule %s before %s names pass %s, which is not in the pipeline", c.a, c.b, n)
			}
		}
	}
	if len(Required(list)) == 0 {
		return fmt.Errorf("the pipeline has no required passes (fuse-groups, memory-plan)")
	}
	return CheckOrder(list)
}

// CheckOrder reports the first ordering rule that list breaks: a pass of
// the list that runs after one it must precede. Rules about a pass the list
// leaves out do not apply (a --passes experiment may run any subset).
func CheckOrder(list []Pass) error {
	at := map[string]int{}
	for i, p := range list {
		at[p.Name] = i
	}
	for _, c := range passOrder {
		i, okA := at[c.a]
		j, okB := at[c.b]
		if okA && okB && i >= j {
			return fmt.Errorf("passes %s and %s out of order: %s must run first (%s)", c.a, c.b, c.a, c.why)
		}
	}
	return nil
}

// Required returns the passes of list that codegen cannot do without, in
// list's order.
func Required(list []Pass) []Pass {
	var out []Pass
	for _, p := range list {
		if p.Required {
			out = append(out, p)
		}
	}
	return out
}
