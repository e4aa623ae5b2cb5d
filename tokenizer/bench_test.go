package tokenizer

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// BenchmarkEncode encodes the lines of the Shakespeare corpus one call per
// line and reports tokens/s (on one goroutine). The committed models always
// run; models with SentencePiece's default nmt_nfkc rule run when spm_train
// is installed.
func BenchmarkEncode(b *testing.B) {
	text, err := os.ReadFile("../testdata/tinyshakespeare.txt")
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for _, l := range bytes.Split(text, []byte("\n")) {
		lines = append(lines, string(l))
	}
	models := map[string]string{
		"bpe_rules":        "testdata/bpe_rules.model",
		"unigram_identity": "testdata/unigram_identity.model",
	}
	for _, name := range []string{"bpe_rules", "unigram_identity", "unigram_nmt_nfkc_8k", "bpe_nmt_nfkc_8k"} {
		b.Run(name, func(b *testing.B) {
			path, ok := models[name]
			if !ok {
				needSentencePiece(b)
				typ := "--model_type=unigram"
				if name[:3] == "bpe" {
					typ = "--model_type=bpe"
				}
				path = trainModel(b, []string{typ, "--vocab_size=8000"}, "../testdata/tinyshakespeare.txt")
			}
			m, err := Load(path)
			if err != nil {
				b.Fatal(err)
			}
			tokens, nbytes := 0, 0
			b.ResetTimer()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				l := lines[i%len(lines)]
				tokens += len(m.Encode(l))
				nbytes += len(l)
			}
			sec := time.Since(start).Seconds()
			b.ReportMetric(float64(tokens)/sec, "tokens/s")
			b.ReportMetric(float64(nbytes)/sec/1e6, "MB/s")
		})
	}
}
