package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/data"
)

// failing serves a Batcher's rows and marks with a stream-like position
// (the batches served, as JSON), and fails at batch failAt (from 0; -1
// never).
type failing struct {
	*data.Batcher
	served, failAt int
	err            error
	sought         []data.Mark
}

func (f *failing) Next() []int64 {
	if f.served == f.failAt {
		f.err = errors.New("shard.json.gz:57: no \"text\" field")
		return nil
	}
	f.served++
	return f.Batcher.Next()
}

func (f *failing) Err() error { return f.err }

func (f *failing) Mark() data.Mark {
	m := f.Batcher.Mark()
	m.Stream = json.RawMessage(fmt.Sprintf(`{"served": %d}`, f.served))
	return m
}

func (f *failing) SeekMark(m data.Mark) error {
	f.sought = append(f.sought, m)
	return f.Batcher.SeekMark(data.Mark{Epoch: m.Epoch, Index: m.Index})
}

// A data error mid-run (a bad line of a streamed shard) stops the run with a
// *DataError naming the update, and saves nothing after it: the newest
// checkpoint is the last update whose data came.
func TestDataErrorStopsWithoutSaving(t *testing.T) {
	dir := t.TempDir()
	opt := options(dir, 10, 2)
	opt.SaveEvery = 1
	src := &failing{Batcher: batcher(t, tokens(20*tinyL, 6), false), failAt: 5} // update 3's second micro-batch
	tn, err := New(tinyRuntime(t), src, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tn.Run()
	var de *DataError
	if !errors.As(err, &de) || de.Step != 3 || !strings.Contains(err.Error(), "shard.json.gz:57:") {
		t.Fatalf("got %v, want a DataError at update 3 naming the line", err)
	}
	ck, err := checkpoint.Load(filepath.Join(dir, LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	if ck.State.Step != 2 || string(ck.State.DataPosition) == "" {
		t.Errorf("the newest checkpoint is at update %d with data_position %s, want 2 with one", ck.State.Step, ck.State.DataPosition)
	}
	if _, err := os.Stat(CheckpointDir(dir, 3)); err == nil {
		t.Error("a checkpoint of the failed update was saved")
	}
	if _, err := tn.Save(); err == nil || !strings.Contains(err.Error(), "data error") {
		t.Errorf("Save after a data error: %v", err)
	}

	// Resume hands the checkpoint's data position back to the batches.
	src = &failing{Batcher: batcher(t, tokens(20*tinyL, 6), false), failAt: -1}
	tn, err = New(tinyRuntime(t), src, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Resume(ck); err != nil {
		t.Fatal(err)
	}
	if len(src.sought) != 1 || string(src.sought[0].Stream) != string(ck.State.DataPosition) || src.sought[0].Index != 2*2*tinyB {
		t.Errorf("Resume sought %+v, want the checkpoint's data_position %s and row %d", src.sought, ck.State.DataPosition, 2*2*tinyB)
	}
}
