// Command c4synth writes synthetic C4-format shards cut from a text corpus
// (c4.WriteSynthetic), for measuring the streaming reader and slc tokenize on
// more data than the tests carry:
//
//	go run ./data/c4/internal/c4synth -o /tmp/c4 -shards 8 -size 1G
//
// -size is the total of the shards' uncompressed JSON.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/data/c4"
)

func main() {
	out := flag.String("o", "", "write the shards into `DIR`")
	corpus := flag.String("corpus", "testdata/tinyshakespeare.txt", "cut documents from `FILE`")
	shards := flag.Int("shards", 8, "`N` shards")
	size := flag.String("size", "64M", "`BYTES` of JSON in all (suffix K, M or G)")
	seed := flag.Uint64("seed", 0, "`S` seeds the documents")
	ext := flag.String("ext", ".json.gz", "shard `EXT`: .json.gz, .jsonl.gz, .json or .jsonl")
	flag.Parse()
	if err := run(*out, *corpus, *shards, *size, *seed, *ext); err != nil {
		fmt.Fprintln(os.Stderr, "c4synth:", err)
		os.Exit(1)
	}
}

func run(out, corpus string, shards int, size string, seed uint64, ext string) error {
	if out == "" || shards < 1 {
		return fmt.Errorf("want -o DIR and -shards >= 1")
	}
	total, err := parseSize(size)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(corpus)
	if err != nil {
		return err
	}
	paths, err := c4.WriteSynthetic(out, c4.Synthetic{Corpus: text, Shards: shards, Bytes: total / int64(shards), Seed: seed, Ext: ext})
	if err != nil {
		return err
	}
	var disk int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		disk += fi.Size()
	}
	fmt.Printf("%d shards, %d bytes of JSON, %d bytes on disk, in %s\n", len(paths), total, disk, out)
	return nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	n, err := strconv.ParseInt(strings.TrimRight(s, "KMG"), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("-size %q: want a positive byte count, optionally with K, M or G", s)
	}
	return n * mult, nil
}
