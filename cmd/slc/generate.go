package main

import (
	"bufio"
	"fmt"
	"gitee.com/gidean/conv-linn/train"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/tokenizer"
)

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "continue a prompt with a trained checkpoint (byte-level text, or a SentencePiece tokenizer's)",
		ArgsUsage: "CKPT",
		Description: "CKPT is a checkpoint directory of slc train (or a save dir: its latest). The prompt's bytes\n" +
			"are the token ids (byte-level, as slc train reads text); each new token is sampled from\n" +
			"the model's next-token distribution at temperature T among the K most likely (0: all),\n" +
			"with a seeded generator, so the same seed gives the same text. The model sees the last\n" +
			"--max-length tokens. Generation stops after --max-new-tokens or at the document\n" +
			"separator (id 256). An empty prompt starts a new document. The kernels are compiled for\n" +
			"this machine's CPU (or --cpu), whatever CPU the checkpoint was trained on.\n\n" +
			"  slc generate runs/shakespeare/latest --prompt 'ROMEO:' --max-new-tokens 300",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("generate"),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "prompt", Usage: "the `TEXT` to continue"},
			&cli.StringFlag{Name: "tokenizer", Usage: "SentencePiece `FILE`.model for the prompt and the text printed", DefaultText: "the one the checkpoint trained with, else byte-level", TakesFile: true},
			&cli.IntFlag{Name: "max-new-tokens", Aliases: []string{"max_new_tokens"}, Value: 200, Usage: "generate at most `N` tokens"},
			&cli.Float64Flag{Name: "temperature", Value: 0.8, Usage: "sampling temperature `T` (0: always the most likely token)"},
			&cli.IntFlag{Name: "top-k", Aliases: []string{"top_k"}, Value: 0, Usage: "sample among the `K` most likely tokens (0: all)"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "`S` seeds the sampling"},
			&cli.IntFlag{Name: "max-length", Aliases: []string{"max_length"}, Usage: "`L`: the context window", DefaultText: "the checkpoint's training length"},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` CPU threads", DefaultText: "all cores"},
		}, codegenFlags()...),
		Action: func(c *cli.Context) error { return generateMain(c) },
	}
}

// sampler draws the next token from logits.
type sampler struct {
	temperature float64
	topK        int
	rng         *ir.RNG
	idx         []int
	p           []float64
}

// next returns the sampled token id: the argmax at temperature 0, else a draw
// from softmax(logits/T) restricted to the topK largest logits (ties broken
// by the lower id).
func (s *sampler) next(logits []float32) int {
	n := len(logits)
	if cap(s.idx) < n {
		s.idx, s.p = make([]int, n), make([]float64, n)
	}
	idx := s.idx[:n]
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if s.temperature == 0 {
		return idx[0]
	}
	k := n
	if s.topK > 0 && s.topK < n {
		k = s.topK
	}
	top := float64(logits[idx[0]])
	var sum float64
	p := s.p[:k]
	for i := 0; i < k; i++ {
		p[i] = math.Exp((float64(logits[idx[i]]) - top) / s.temperature)
		sum += p[i]
	}
	u := s.rng.Float64() * sum
	for i := 0; i < k; i++ {
		if u < p[i] {
			return idx[i]
		}
		u -= p[i]
	}
	return idx[k-1]
}

func generateMain(c *cli.Context) error {
	const cmd = "generate"
	maxNew, temp, topK, threads := c.Int("max-new-tokens"), c.Float64("temperature"), c.Int("top-k"), c.Int("threads")
	switch {
	case maxNew < 0:
		return usagef(cmd, "flag --max-new-tokens: must be >= 0, got %d", maxNew)
	case !(temp >= 0) || math.IsInf(temp, 0):
		return usagef(cmd, "flag --temperature: must be a finite number >= 0, got %v", temp)
	case topK < 0:
		return usagef(cmd, "flag --top-k: must be >= 0, got %d", topK)
	case c.Int("max-length") < 0 || (c.IsSet("max-length") && c.Int("max-length") < 1):
		return usagef(cmd, "flag --max-length: must be >= 1, got %d", c.Int("max-length"))
	case threads < 1 || threads > runtime.MaxThreads:
		return usagef(cmd, "flag --threads: must be between 1 and %d, got %d", runtime.MaxThreads, threads)
	}
	if _, err := codegenOptions(c, cmd, nil, nil); err != nil {
		return err
	}
	dir, ck, err := openCheckpoint(c, cmd)
	if err != nil {
		return err
	}
	rt, m, err := checkpointRuntime(c, cmd, dir, ck, 1, c.Int("max-length"), threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	if m.Build.BatchSize != 1 {
		return fmt.Errorf("%s: slc generate runs one row, but the checkpoint's ONNX model has a fixed batch of %d (export it with a symbolic batch dim)", dir, m.Build.BatchSize)
	}
	vocab, length := m.VocabSize, m.Build.SeqLen
	sep := train.SeparatorFor(vocab)
	tok, err := checkpointTokenizer(c, ck, vocab)
	if err != nil {
		return err
	}
	if tok != nil {
		return generateTokens(c, rt, tok, vocab, length, maxNew, &sampler{temperature: temp, topK: topK, rng: ir.NewRNG(c.Uint64("seed"))})
	}

	ctx := make([]int64, 0, len(c.String("prompt"))+maxNew+1)
	for _, b := range []byte(c.String("prompt")) {
		if int(b) >= vocab {
			return fmt.Errorf("--prompt: byte %d is outside the model's vocabulary of %d ids", b, vocab)
		}
		ctx = append(ctx, int64(b))
	}
	if len(ctx) == 0 {
		ctx = append(ctx, int64(sep)) // a document boundary: start a new one
	}
	out := &textWriter{w: bufio.NewWriter(c.App.Writer)}
	defer out.w.Flush()
	out.w.WriteString(c.String("prompt"))
	s := &sampler{temperature: temp, topK: topK, rng: ir.NewRNG(c.Uint64("seed"))}
	ids := make([]int64, length)
	for i := 0; i < maxNew; i++ {
		next, err := nextToken(rt, ctx, ids, vocab, s)
		if err != nil {
			return err
		}
		if next == sep && sep == 256 {
			break // the end of the document
		}
		ctx = append(ctx, int64(next))
		out.token(next)
	}
	out.end()
	return nil
}

// generateTokens is generate with a SentencePiece tokenizer: the prompt is
// its ids (no end-of-text id), the text printed is the decoding of prompt
// and continuation, written as it grows; the end-of-text id ends it.
func generateTokens(c *cli.Context, rt *runtime.Runtime, tok *tokenizer.Model, vocab, length, maxNew int, s *sampler) error {
	prompt := tok.Encode(c.String("prompt"))
	ctx := make([]int64, 0, len(prompt)+maxNew+1)
	for _, id := range prompt {
		ctx = append(ctx, int64(id))
	}
	if len(ctx) == 0 {
		ctx = append(ctx, int64(tok.EOSID())) // a document boundary: start a new one
	}
	w := bufio.NewWriter(c.App.Writer)
	defer w.Flush()
	all := append([]int32(nil), prompt...)
	printed := ""
	flush := func() error {
		text, err := tok.Decode(all)
		if err != nil {
			return fmt.Errorf("decoding the generated ids: %w", err)
		}
		if strings.HasPrefix(text, printed) {
			w.WriteString(text[len(printed):])
			printed = text
		}
		return w.Flush()
	}
	if err := flush(); err != nil {
		return err
	}
	ids := make([]int64, length)
	for i := 0; i < maxNew; i++ {
		next, err := nextToken(rt, ctx, ids, vocab, s)
		if err != nil {
			return err
		}
		if int32(next) == tok.EOSID() {
			break
		}
		ctx = append(ctx, int64(next))
		if next < tok.VocabSize() { // a model id past the tokenizer's: nothing to print
			all = append(all, int32(next))
		}
		if err := flush(); err != nil {
			return err
		}
	}
	w.WriteString("\n")
	return nil
}

// nextToken samples the token after ctx: the infer program on the last
// len(ids) tokens of ctx (ids is the reused input buffer), the logits of the
// last real position.
func nextToken(rt *runtime.Runtime, ctx, ids []int64, vocab int, s *sampler) (int, error) {
	window := ctx[max(0, len(ctx)-len(ids)):]
	copy(ids, window)
	clear(ids[len(window):]) // causal: what follows the last real token does not matter
	res, err := rt.Run("infer", runtime.Inputs{Data: map[string][]int64{"input_ids": ids}})
	if err != nil {
		return 0, err
	}
	logits, err := res["logits"].Float32s()
	if err != nil {
		return 0, fmt.Errorf("infer: logits: %w", err)
	}
	pos := len(window) - 1
	return s.next(logits[pos*vocab : (pos+1)*vocab]), nil
}

// checkpointTokenizer is the tokenizer of eval and generate: --tokenizer,
// else the one the checkpoint's run trained with (nil: byte-level).
func checkpointTokenizer(c *cli.Context, ck *checkpoint.Checkpoint, vocab int) (*tokenizer.Model, error) {
	path := c.String("tokenizer")
	if path == "" {
		path, _ = ck.State.Args["tokenizer"].(string)
	}
	rows, _ := ck.State.Args["rows"].(string)
	if rows == "documents" && path == "" {
		return nil, usagef(c.Command.Name, "the checkpoint trained on document rows of a tokenizer it does not name; give --tokenizer")
	}
	return train.LoadTokenizer(path, vocab, rows == "documents")
}

// textWriter prints generated byte tokens as text: complete UTF-8 sequences
// as they are, invalid ones, control bytes (other than newline and tab) and
// ids that are no byte as U+FFFD, so that a half-trained model cannot send
// escape sequences to the terminal.
type textWriter struct {
	w       *bufio.Writer
	pending []byte
}

const replacement = "\uFFFD"

func (t *textWriter) token(id int) {
	if id >= 256 {
		t.flushPending()
		t.w.WriteString(replacement)
		return
	}
	t.pending = append(t.pending, byte(id))
	for len(t.pending) > 0 && utf8.FullRune(t.pending) {
		r, size := utf8.DecodeRune(t.pending)
		switch {
		case r == utf8.RuneError && size == 1, r < 0x20 && r != '\n' && r != '\t', r == 0x7f:
			t.w.WriteString(replacement)
		default:
			t.w.Write(t.pending[:size])
		}
		t.pending = t.pending[size:]
		if r == '\n' {
			t.w.Flush()
		}
	}
}

// flushPending prints an incomplete UTF-8 sequence as U+FFFD.
func (t *textWriter) flushPending() {
	if len(t.pending) > 0 {
		t.w.WriteString(replacement)
		t.pending = t.pending[:0]
	}
}

func (t *textWriter) end() {
	t.flushPending()
	t.w.WriteString("\n")
}
