package train

import (
	"encoding/json"
	"fmt"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/runtime"
)

// Run is slc train on one rank of cfg.Comm (all of it for one process),
// as llm.c's train_gpt2.c main: settings, model, data, compile and load,
// the update loop, the summary. Until the run is ready, a failure goes
// through ready, so that every rank learns that one failed and stops with
// it.
func Run(cfg *Config) (err error) {
	comm := cfg.Comm
	ready := func(err error) error {
		if a, ok := err.(*agreed); ok { // every rank knows already
			return a.err
		}
		return agreeSetup(comm, err)
	}
	r, err := resolve(cfg, comm.Size())
	if err != nil {
		return ready(err)
	}
	// The model first (cheap: reading a config), for the vocabulary the data
	// is checked against; the costly compile comes after the data loaded.
	mod, err := r.openModel()
	if err != nil {
		return ready(err)
	}
	tok, err := LoadTokenizer(r.set.Tokenizer, mod.VocabSize, r.set.Rows == "documents")
	if err != nil {
		return ready(err)
	}
	// The save directory and its lock before the data load and the compile:
	// a second writer is refused before either does any work.
	if comm.Rank() == 0 { // the other ranks write nothing
		if r.created, err = prepareSaveDir(r); err != nil {
			return ready(err)
		}
		defer func() { r.releaseSaveDir(err) }()
	}
	endSetup := r.watchSetup()
	defer endSetup() // a run that fails during setup ends the watcher too
	d, err := r.loadData(mod.VocabSize, tok)
	if err != nil {
		return ready(err)
	}
	defer d.close()
	r.printf("Model: %s (%s; %s; batch %d × %d tokens, seed %d, %s)\n", r.set.Model, mod.Kind, peftLabelAlpha(&r.set), r.set.BatchSize, r.set.MaxLength, r.set.Seed, r.set.DType)
	rt, err := r.load(mod)
	if err != nil {
		return ready(err)
	}
	defer rt.Close()
	writeParamCounts(cfg.Out, rt)
	r.printSetup(d, tok, driver.RunsOn(rt))
	tn, obs, err := r.trainer(rt, d, mod)
	if err != nil {
		return ready(err)
	}
	defer r.closeMetrics()
	if err := r.agreeToStart(tn, d, mod); err != nil {
		return err
	}
	endSetup()
	done := make(chan struct{})
	defer close(done)
	go r.watchTraining(tn, obs, done)
	res, err := tn.Run()
	obs.Finish()
	return r.summary(res, err)
}

// openModel opens the run's model: the checkpoint's own config (or ONNX
// model) when a resumed run names none, else MODEL; the batch, length and
// settings it fixes become the run's.
func (r *run) openModel() (*driver.Model, error) {
	s := &r.set
	if s.Lowering == "" {
		s.Lowering = "auto" // resuming a run started from an artifact, with its config
	}
	o := r.cfg.Open
	o.Cmd, o.LengthSet = "train", r.lengthSet
	sp := s.Spec()
	var mod *driver.Model
	var err error
	switch {
	case r.modelFromCkpt && !driver.IsArtifact(s.Model):
		// The checkpoint's own config: the run resumes wherever it is started.
		o = driver.OpenOptions{Cmd: "train", LengthSet: true, BatchSet: true, Codegen: r.cfg.Open.Codegen}
		o.Codegen.Target.CPU, o.Codegen.SLTrainLowering = s.CPU, s.Lowering
		if desc, ok := onnx.ParseDescriptor(r.resume.Config); ok {
			mod, err = driver.OpenONNX(r.resumeDir+"/"+checkpoint.ONNXFile, "checkpoint's ONNX model", r.resume.ONNX, desc, &sp, o)
		} else {
			mod, err = driver.OpenConfig(r.resumeDir+"/"+checkpoint.ConfigFile, "checkpoint config", r.resume.Config, &sp, o)
		}
	default:
		mod, err = driver.Open(s.Model, &sp, o)
	}
	if err != nil {
		return nil, err
	}
	s.take(sp)
	if err := r.setAccum(); err != nil { // an artifact fixes the batch size
		return nil, err
	}
	if r.resume != nil {
		if err := sameModel(mod, r.resume); err != nil {
			return nil, fmt.Errorf("--continue-from %s: %w", r.resumeDir, err)
		}
	}
	if s.Rows == "documents" && s.Tokenizer == "" {
		return nil, usagef("flag --rows documents: needs --tokenizer (the pad id of document rows is the tokenizer's; T5's is 0)")
	}
	return mod, nil
}

// load compiles and loads the model. The lead compiles first, the other
// ranks after it: auto's measured SLTrain lowering times are then in the
// cache of the ranks on its machine, which compile the same program
// instead of timing anew.
func (r *run) load(mod *driver.Model) (*runtime.Runtime, error) {
	comm := r.cfg.Comm
	lead := comm.Rank() == 0
	if !lead {
		if err := agreeSetup(comm, nil); err != nil {
			return nil, &agreed{err}
		}
	}
	rt, err := mod.Load(driver.LoadOptions{Cmd: "train", Threads: r.threads, Log: r.cfg.Out})
	if lead && comm.Size() > 1 {
		if rerr := agreeSetup(comm, err); rerr != nil {
			if rt != nil {
				rt.Close()
			}
			return nil, &agreed{rerr}
		}
	}
	return rt, err
}

// agreed is a failure every rank already agreed on: Run returns it as it is.
type agreed struct{ err error }

func (e *agreed) Error() string { return e.err.Error() }
func (e *agreed) Unwrap() error { return e.err }

// trainer makes the Trainer of the run, with its --init weights and the
// checkpoint it resumes.
func (r *run) trainer(rt *runtime.Runtime, d *runData, mod *driver.Model) (*Trainer, Progress, error) {
	s := &r.set
	if s.Init != "" {
		rep, err := LoadInit(rt, s.Init)
		if err != nil {
			return nil, nil, fmt.Errorf("--init %w", err)
		}
		note := ""
		if len(rep.Missing) > 0 {
			note = fmt.Sprintf("; %d not in the file keep their seeded values (%s)", len(rep.Missing), firstNames(rep.Missing, 3))
		}
		r.printf("Init: %d tensors from %s%s\n", rep.Loaded, s.Init, note)
	}
	obs := r.cfg.Progress(r.logEvery)
	tn, err := New(rt, d.train, d.eval, Options{
		Schedule:    s.schedule(),
		Accum:       r.accum,
		WeightDecay: s.WeightDecay,
		MaxGradNorm: s.GradClipping,
		EvalEvery:   s.EvalEvery,
		SaveEvery:   s.SaveEvery,
		SaveDir:     r.saveDir,
		EvalBatches: s.EvalBatches,
		EvalTokens:  s.EvalTokens,
		Seed:        s.Seed,
		Args:        s.Args(),
		Observer:    obs,
		Comm:        r.cfg.Comm,
		ONNX:        mod.ONNX,
	})
	if err != nil {
		return nil, nil, err
	}
	if r.resume != nil {
		if err := tn.Resume(r.resume); err != nil {
			return nil, nil, fmt.Errorf("--continue-from %s: %w", r.resumeDir, err)
		}
		r.printf("Resuming %s at update %d of %d (%s tokens seen)\n", r.resumeDir, r.from(), s.Steps, grouped(r.resume.State.TokensSeen))
	}
	return tn, obs, nil
}

// agreeToStart waits until every rank is set up (or all stop), checks that
// they run the same settings, and only then lets rank 0 replace an old
// run's files and open the metrics.
func (r *run) agreeToStart(tn *Trainer, d *runData, mod *driver.Model) error {
	comm := r.cfg.Comm
	cfgJSON, _ := json.Marshal(mod.Config)
	if err := agreeSetup(comm, nil); err != nil {
		return err
	}
	// The same verdict on every rank (each compares all the hashes).
	if err := checkSameSettings(comm, rankSettings(&r.set, cfgJSON, r.from(), dataFingerprint(d.eval, d.rows, d.shards))); err != nil {
		return err
	}
	if comm.Rank() == 0 {
		if err := r.openFiles(tn); err != nil {
			return agreeSetup(comm, err)
		}
	}
	if err := agreeSetup(comm, nil); err != nil {
		return err
	}
	saveNote := "at the end"
	if r.set.SaveEvery > 0 {
		saveNote = fmt.Sprintf("every %d updates and at the end", r.set.SaveEvery)
	}
	r.printf("Checkpoints: %s (%s); metrics: %s\n", r.saveDir, saveNote, r.metrics)
	return nil
}

// openFiles replaces an old run's files (--overwrite) and opens the
// metrics: rank 0's, once every rank is checked.
func (r *run) openFiles(tn *Trainer) error {
	if r.cfg.Overwrite && r.resume == nil {
		if err := removeOldRun(r.saveDir); err != nil {
			return err
		}
	}
	m, err := OpenMetrics(r.metrics, r.from())
	if err != nil {
		return err
	}
	r.metricsFile = m
	tn.SetMetrics(m)
	return nil
}

func (r *run) closeMetrics() {
	if r.metricsFile != nil {
		r.metricsFile.Close()
	}
}

// from is the update the run starts at.
func (r *run) from() int {
	if r.resume != nil {
		return int(r.resume.State.Step)
	}
	return 0
}

func (r *run) printf(format string, args ...any) { fmt.Fprintf(r.cfg.Out, format, args...) }
