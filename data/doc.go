// Package data turns training corpora into the token stream `slc train` consumes,
// and cuts that stream into micro-batches in a fixed, reproducible order.
//
// # Sources
//
// [Load] reads one file, every data file of a directory (sorted by name, not
// recursive, dot files skipped) or every file a glob pattern matches (sorted), and
// concatenates their tokens in that order. The format follows the file name:
//
//   - .txt: byte-level text, byte b → id b; the whole file is one document.
//   - .json, .jsonl, .json.gz, .jsonl.gz: C4-style JSON lines, one document per
//     line in the field "text", byte-level over its UTF-8 bytes; blank lines are
//     skipped.
//   - .npy: a NumPy array of dtype uint16, int32, uint32 or int64, little-endian,
//     format version 1.0, 2.0 or 3.0, any shape, read flattened in C order.
//   - .bin: an llm.c shard: a header of 256 little-endian int32 (magic 20240520,
//     version 1, header[2] = token count) followed by uint16 tokens; the llama-3
//     variant (magic 20240801, version 7, uint32 tokens) is read as well.
//
// Token files (.npy, .bin) are used as they are: their tokenizer already chose the
// ids and put its own end-of-text tokens between documents. Every id must be below
// [LoadOptions.VocabSize]; an id outside the vocabulary is an error that names the
// file, the token's position in that file and the id.
//
// # Document separation
//
// In byte-level text, each document — a whole .txt file, or one JSON line of a
// .json/.jsonl(.gz) file — is followed by the separator token
// [LoadOptions.Separator] (none when it is -1), so that a training row that
// crosses a document boundary shows the model where one text ends and the next
// begins. `slc train` passes 256, the first id after the 256 byte ids (an
// end-of-text token, like GPT-2's <|endoftext|>), when the model's vocabulary has
// more than 256 ids, and '\n' (10) otherwise. An empty .txt file holds no document
// and adds nothing; a JSON line whose "text" is empty still adds its separator.
//
// # Batching contract
//
// Reproducibility of a training run depends on this order, and the tests pin it.
// The stream T is cut into rows of L tokens (L = the sequence length): row k is
// T[k·L, (k+1)·L), and a tail shorter than L is dropped. Each micro-batch takes the
// next B rows of the current epoch's row order; when the order runs out in the
// middle of a batch, the batch continues with the next epoch's order. Without
// shuffling every epoch's order is 0, 1, 2, …; with shuffling, epoch e uses
// ir.NewRNG(ir.SeedFor(seed, "data/epoch/<e>")).Perm(rows), so an epoch's order
// depends only on the seed, the epoch number and the row count. A [Position]
// (epoch, rows consumed in that epoch) is all a checkpoint needs to resume the
// exact sequence with [Batcher.Seek].
//
// [Split] holds out the last rows of the stream for evaluation before batching, so
// evaluation rows are never trained on.
//
// # Streaming
//
// Load holds the whole corpus in memory. For C4 at its real size, a
// [StreamBatcher] serves the same document rows straight from a c4.Stream
// (package data/c4: shards read document by document, a reproducible shuffle),
// tokenizing each document as its batch is taken; its order is the stream's and
// its position the stream's position, which [StreamBatcher.Mark] hands a
// checkpoint as JSON.
package data
