package train

import "gitee.com/gidean/conv-linn/data"

// resolveStream decides whether the run streams --data (s.Stream): with
// --stream (a resumed run: its checkpoint's choice), when --data names JSON
// shards only and the rows are documents of a --tokenizer. A stream cannot
// be split: evaluating it needs --eval-data; without, --eval-fraction 0 or
// --eval-every 0 (no evaluation asked) trains without one. A resumed run
// must stream exactly when its checkpoint has a stream position.
func (r *run) resolveStream() error {
	s, given := &r.set, r.cfg.Given
	if s.ShuffleBuffer < 0 || given["shuffle-buffer"] && s.ShuffleBuffer < 1 {
		return usagef("flag --shuffle-buffer: must be >= 1, got %d", s.ShuffleBuffer)
	}
	if s.Stream {
		shards, err := data.JSONShards(s.Data)
		can := err == nil && shards != nil && s.Rows == "documents" && s.Tokenizer != ""
		if !can && err == nil && given["stream"] { // a path that names no data is the loader's to report
			return usagef("flag --stream: streams JSON shards (.json, .jsonl, .json.gz, .jsonl.gz) with --rows documents and --tokenizer; --data %s with --rows %s is read into memory", s.Data, s.Rows)
		}
		s.Stream = can
	}
	if s.Stream && s.EvalData == "" && s.EvalFraction > 0 {
		if given["eval-every"] && s.EvalEvery == 0 && !given["eval-fraction"] {
			s.EvalFraction = 0 // no evaluation asked: nothing to split
		} else {
			return usagef("--data %s is streamed (JSON shards, --rows documents), and a stream cannot be split for evaluation: give --eval-data PATH, --eval-fraction 0 or --eval-every 0 (or --stream=false to load --data into memory)", s.Data)
		}
	}
	if r.resume != nil {
		switch saved := len(r.resume.State.DataPosition) > 0; {
		case saved && !s.Stream:
			return usagef("--continue-from %s: the run streamed --data (its checkpoint holds a stream position): resume it streamed (--stream), from its JSON shards with --rows documents and --tokenizer", r.resumeDir)
		case !saved && s.Stream:
			return usagef("--continue-from %s: the run held --data in memory (its checkpoint holds no stream position); resume it with --stream=false", r.resumeDir)
		}
	}
	return nil
}
