package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/data/c4"
	"gitee.com/gidean/conv-linn/summary"
	"gitee.com/gidean/conv-linn/tokenizer"
)

func tokenizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "tokenize",
		Usage:     "pre-tokenize C4-format JSON-lines shards into llm.c token shards (.bin) for slc train --data",
		ArgsUsage: "DATA...",
		Description: "DATA is a shard (.json.gz, .jsonl.gz, .json or .jsonl, one {\"text\": ...} object per line, as\n" +
			"C4's c4-train.XXXXX-of-01024.json.gz), a directory of shards or a glob; several may be given.\n" +
			"Each shard becomes DIR/<name>.bin: every document's ids, then the tokenizer's end-of-text id\n" +
			"(</s>, as Hugging Face's T5 tokenizer appends it), in file order. Tokens are uint16 (llm.c's\n" +
			"header: magic 20240520, version 1) when every id fits, else uint32 (magic 20240801, version 7).\n" +
			"The documents of a shard are tokenized on --threads cores; the output is the same bytes for\n" +
			"any thread count. Every .bin is written whole (a temporary file, fsynced and renamed) or not at\n" +
			"all; after a bad shard, the shards before it are done and the rest are not started. Invalid\n" +
			"UTF-8 in a text is tokenized as SentencePiece does (byte pieces, or the unknown id).\n\n" +
			"  slc tokenize c4/en/ --tokenizer t5-base/spiece.model -o c4-tokens/\n" +
			"  slc train llama_60m.json --data 'c4-tokens/*.bin' ...",
		HideHelpCommand: true,
		OnUsageError:    onUsageError("tokenize"),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tokenizer", Usage: "SentencePiece `FILE`.model (unigram or BPE) to tokenize with", TakesFile: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the .bin shards into `DIR` (created if missing)", TakesFile: true},
			&cli.IntFlag{Name: "threads", Value: defaultThreads(), Usage: "`N` threads tokenizing", DefaultText: "all cores"},
			&cli.StringFlag{Name: "dtype", Value: "auto", Usage: "`TYPE` of the tokens: auto (uint16 when the vocabulary fits), uint16 or uint32"},
		},
		Action: func(c *cli.Context) error { return tokenizeMain(c) },
	}
}

func tokenizeMain(c *cli.Context) error {
	const cmd = "tokenize"
	model, out, threads := c.String("tokenizer"), c.String("output"), c.Int("threads")
	switch {
	case c.NArg() == 0:
		return usagef(cmd, "missing DATA argument")
	case model == "":
		return usagef(cmd, "missing --tokenizer FILE.model")
	case out == "":
		return usagef(cmd, "missing -o DIR")
	case threads < 1:
		return usagef(cmd, "flag --threads: must be >= 1, got %d", threads)
	}
	dtype := c.String("dtype")
	if dtype != "auto" && dtype != "uint16" && dtype != "uint32" {
		return usagef(cmd, "flag --dtype: %q is not auto, uint16 or uint32", dtype)
	}
	for _, a := range c.Args().Slice() {
		if a == "" {
			return usagef(cmd, "DATA is an empty path")
		}
	}
	files, err := c4.Files(c.Args().Slice()...)
	if err != nil {
		return err
	}
	m, err := tokenizer.Load(model)
	if err != nil {
		return err
	}
	if m.EOSID() < 0 {
		return fmt.Errorf("%s: the model has no end-of-text piece (</s>) to end each document with", model)
	}
	wide := m.VocabSize() > 1<<16
	switch {
	case dtype == "uint16" && wide:
		return fmt.Errorf("%s: %d pieces do not fit uint16 tokens (ids below 65536); use --dtype uint32 or auto", model, m.VocabSize())
	case dtype == "uint32":
		wide = true
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	total, err := data.TokenizeFiles(ctx, files, out, m, data.TokenizeOptions{Wide: wide, Threads: threads, Log: c.App.ErrWriter, TTY: isTerminal(c.App.ErrWriter)})
	if err != nil {
		return err
	}
	sec := total.Seconds
	typ := "uint16"
	if wide {
		typ = "uint32"
	}
	printf(c, "tokenized %d shards into %s: %s documents, %s %s tokens (end-of-text id %d after each document) in %.1f s, %s tokens/s on %d threads\n",
		len(files), out, summary.Grouped(total.Docs), summary.Grouped(total.Tokens), typ, m.EOSID(), sec, summary.Grouped(int64(float64(total.Tokens)/sec)), threads)
	return nil
}
