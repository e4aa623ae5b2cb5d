package train

import (
	"fmt"

	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/tokenizer"
)

// loadTrainData loads the training corpus and the held-out split and makes
// their batchers: packed rows, or document rows (--rows documents, split by
// documents).
func loadTrainData(s *Settings, vocab int, tok *tokenizer.Model) (trainB, evalB *data.Batcher, err error) {
	opt := data.LoadOptions{VocabSize: vocab, Separator: SeparatorFor(vocab)}
	if tok != nil {
		opt.Tokenizer, opt.Separator = tok, int(tok.EOSID())
	}
	tokens, err := data.Load(s.Data, opt)
	if err != nil {
		return nil, nil, err
	}
	var evalTokens []int32
	if s.EvalData != "" {
		if evalTokens, err = data.Load(s.EvalData, opt); err != nil {
			return nil, nil, err
		}
	}
	if s.Rows == "documents" {
		return documentBatchers(s, tokens, evalTokens, tok)
	}
	var trainTokens []int32
	switch {
	case s.EvalData != "":
		if len(evalTokens) < s.MaxLength {
			return nil, nil, fmt.Errorf("%s: %d tokens make no full row of %d tokens", s.EvalData, len(evalTokens), s.MaxLength)
		}
		trainTokens = tokens
	case s.EvalFraction > 0:
		if len(tokens)/s.MaxLength < 2 {
			return nil, nil, fmt.Errorf("%s: %d tokens make %d rows of %d tokens; training with a held-out split needs at least 2 (or --eval-fraction 0)", s.Data, len(tokens), len(tokens)/s.MaxLength, s.MaxLength)
		}
		if trainTokens, evalTokens, err = data.Split(tokens, s.MaxLength, s.EvalFraction); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
		}
	default:
		trainTokens = tokens
	}
	if len(trainTokens) < s.MaxLength {
		return nil, nil, fmt.Errorf("%s: %d tokens make no full row of %d tokens (--max-length)", s.Data, len(trainTokens), s.MaxLength)
	}
	if trainB, err = data.NewBatcher(trainTokens, s.MaxLength, s.BatchSize, s.Shuffle, s.Seed); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	if evalTokens != nil {
		if evalB, err = data.NewBatcher(evalTokens, s.MaxLength, s.BatchSize, s.EvalTokens > 0, seedEvalShuffle); err != nil {
			return nil, nil, fmt.Errorf("eval data: %w", err)
		}
	}
	return trainB, evalB, nil
}

// streamTrainData makes the batchers of a streamed run (s.Stream): the
// training documents straight from a c4 stream of --data's shards (shuffled
// with --seed and --shuffle-buffer, epoch after epoch without end), the
// held-out documents of --eval-data (a validation shard is small) in memory.
func streamTrainData(s *Settings, vocab int, tok *tokenizer.Model) (*data.StreamBatcher, *data.Batcher, []string, error) {
	files, err := data.JSONShards(s.Data)
	if err != nil {
		return nil, nil, nil, err
	}
	if files == nil {
		return nil, nil, nil, fmt.Errorf("%s: not only JSON shards: it cannot be streamed", s.Data)
	}
	st, err := c4.NewStream(files, c4.Options{Shuffle: s.Shuffle, Seed: s.Seed, Buffer: s.ShuffleBuffer})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	trainB, err := data.NewStreamBatcher(st, tok, tok.EOSID(), tok.PadID(), s.MaxLength, s.BatchSize)
	if err != nil {
		st.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	var evalB *data.Batcher
	if s.EvalData != "" {
		tokens, err := data.Load(s.EvalData, data.LoadOptions{VocabSize: vocab, Separator: int(tok.EOSID()), Tokenizer: tok})
		if err == nil {
			if evalB, err = data.NewDocumentBatcher(data.Documents(tokens, tok.EOSID()), s.MaxLength, s.BatchSize, tok.PadID(), s.EvalTokens > 0, seedEvalShuffle); err != nil {
				err = fmt.Errorf("eval data: %w", err)
			}
		}
		if err != nil {
			trainB.Close()
			return nil, nil, nil, err
		}
	}
	return trainB, evalB, files, nil
}

// seedEvalShuffle is the seed's shuffle seed of the validation set
// (--eval-tokens): slc's own permutation of the eval rows with that seed,
// not HF datasets' order.
const seedEvalShuffle = 42

// documentBatchers makes the batchers of --rows documents: the streams cut
// into documents at the tokenizer's end-of-text id, the held-out split the
// last --eval-fraction of the documents.
func documentBatchers(s *Settings, tokens, evalTokens []int32, tok *tokenizer.Model) (trainB, evalB *data.Batcher, err error) {
	eos, pad := tok.EOSID(), tok.PadID()
	docs := data.Documents(tokens, eos)
	var evalDocs [][]int32
	switch {
	case s.EvalData != "":
		evalDocs = data.Documents(evalTokens, eos)
	case s.EvalFraction > 0:
		if docs, evalDocs, err = data.SplitDocuments(docs, s.EvalFraction); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
		}
	}
	if trainB, err = data.NewDocumentBatcher(docs, s.MaxLength, s.BatchSize, pad, s.Shuffle, s.Seed); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Data, err)
	}
	if evalDocs != nil {
		if evalB, err = data.NewDocumentBatcher(evalDocs, s.MaxLength, s.BatchSize, pad, s.EvalTokens > 0, seedEvalShuffle); err != nil {
			return nil, nil, fmt.Errorf("eval data: %w", err)
		}
	}
	return trainB, evalB, nil
}

// LoadTokenizer reads --tokenizer (nil for ""): its vocabulary must fit the
// model's, it must have an end-of-text id, and for document rows a pad id.
func LoadTokenizer(path string, vocab int, documents bool) (*tokenizer.Model, error) {
	if path == "" {
		return nil, nil
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, err
	}
	switch {
	case tok.VocabSize() > vocab:
		return nil, fmt.Errorf("--tokenizer %s: its vocabulary has %d ids, more than the model's vocab_size %d", path, tok.VocabSize(), vocab)
	case tok.EOSID() < 0:
		return nil, fmt.Errorf("--tokenizer %s: the model has no end-of-text id (eos_id), which ends each document", path)
	case documents && tok.PadID() < 0:
		return nil, fmt.Errorf("--tokenizer %s: the model has no pad id (pad_id), which --rows documents pads with (train it with --pad_id, as T5's: 0)", path)
	}
	return tok, nil
}

// SeparatorFor is the document separator of byte-level text: 256, the first
// id after the bytes, when the vocabulary has it, else '\n'.
func SeparatorFor(vocab int) int {
	if vocab > 256 {
		return 256
	}
	return '\n'
}

// runData is the data of a run: its training batches, the held-out rows
// and what the run's lines and the ranks' check say of them.
type runData struct {
	train  Batches
	eval   *data.Batcher
	rows   int      // the rows of an epoch in memory
	shards []string // the streamed shards
	tok    *tokenizer.Model
	close  func()
}

// loadData loads (or opens the stream of) the run's data.
func (r *run) loadData(vocab int, tok *tokenizer.Model) (*runData, error) {
	s := &r.set
	if s.Stream {
		sb, eb, files, err := streamTrainData(s, vocab, tok)
		if err != nil {
			return nil, err
		}
		return &runData{train: sb, eval: eb, shards: files, close: func() { sb.Close() }, tok: tok}, nil
	}
	mb, eb, err := loadTrainData(s, vocab, tok)
	if err != nil {
		return nil, err
	}
	return &runData{train: mb, eval: eb, rows: mb.Rows(), close: func() {}, tok: tok}, nil
}

// HeldOut is the data slc eval evaluates a checkpoint on: the last
// fraction of a corpus's rows (or documents), or all of it.
type HeldOut struct {
	path   string
	length int
	tokens []int32   // packed rows
	docs   [][]int32 // document rows (a run that trained on them)
	tok    *tokenizer.Model
}

// LoadHeldOut loads path as a run of vocab ids trained (byte-level or with
// tok), keeping the last frac of its rows of length tokens (0: all of
// them), as the run's held-out split took them; documents cuts it into
// document rows at tok's end-of-text id.
func LoadHeldOut(path string, frac float64, vocab, length int, documents bool, tok *tokenizer.Model) (*HeldOut, error) {
	opt := data.LoadOptions{VocabSize: vocab, Separator: SeparatorFor(vocab)}
	if tok != nil {
		opt.Tokenizer, opt.Separator = tok, int(tok.EOSID())
	}
	tokens, err := data.Load(path, opt)
	if err != nil {
		return nil, err
	}
	h := &HeldOut{path: path, length: length, tok: tok}
	switch {
	case documents: // the run trained on document rows
		h.tokens, h.docs = tokens, data.Documents(tokens, tok.EOSID())
		if frac > 0 {
			if _, h.docs, err = data.SplitDocuments(h.docs, frac); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
	case frac > 0:
		if _, h.tokens, err = data.Split(tokens, length, frac); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		h.tokens = tokens
	}
	return h, nil
}

// Batcher is the held-out rows in batches of batch rows, in order.
func (h *HeldOut) Batcher(batch int) (*data.Batcher, error) {
	var b *data.Batcher
	var err error
	if h.docs != nil {
		b, err = data.NewDocumentBatcher(h.docs, h.length, batch, h.tok.PadID(), false, 0)
	} else {
		b, err = data.NewBatcher(h.tokens, h.length, batch, false, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.path, err)
	}
	return b, nil
}
