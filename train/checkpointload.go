package train

import (
	"fmt"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/runtime"
)

// CheckpointLoad says how LoadCheckpoint compiles and loads a checkpoint's
// model: Batch × Length (0: the checkpoint's), the codegen options of the
// command's flags (the CPU of --cpu, default this machine's, never the one
// recorded in the checkpoint) and the runtime's threads.
type CheckpointLoad struct {
	driver.LoadOptions
	Codegen       codegen.Options
	LoweringSet   bool // --sltrain-lowering given: else the run's own
	MaxLengthSet  bool // --max-length given: a length over the model's is a usage error
	Batch, Length int
}

// LoadCheckpoint compiles a checkpoint's model and loads its weights,
// checking its sparse indices. The LowRankSparseAdd lowering is the
// flag's when set, else the one the run trained with.
func LoadCheckpoint(dir string, ck *checkpoint.Checkpoint, o CheckpointLoad) (*runtime.Runtime, *driver.Model, error) {
	co := o.Codegen
	if l, ok := ck.State.Args["sltrain_lowering"].(string); ok && l != "" && !o.LoweringSet {
		co.SLTrainLowering = l
	}
	batch := o.Batch
	if batch == 0 {
		batch = driver.CheckpointBatch(ck)
	}
	m, err := driver.CheckpointModel(dir, ck.Config, ck.SLTrain, ck.State.Args, batch, o.Length)
	if err != nil {
		return nil, nil, driver.MaxLengthUsage(o.Cmd, o.MaxLengthSet, err)
	}
	m.Codegen = co
	rt, err := m.Load(o.LoadOptions)
	if err != nil {
		return nil, nil, err
	}
	if err := checkpoint.ToRuntime(ck, rt); err != nil {
		rt.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if err := CheckIndices(rt); err != nil {
		rt.Close()
		return nil, nil, fmt.Errorf("%s: corrupt checkpoint: %w", dir, err)
	}
	return rt, m, nil
}
