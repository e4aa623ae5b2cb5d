"""Writes SentencePiece's view of a model and of a text as JSON, for the Go
tests to compare against: the vocabulary, the special ids, the ids and
decoded text of every line, and the decoded text of random id sequences.

usage: /usr/bin/python3 spm_reference.py MODEL TEXT OUT.json NUM_DECODES

Lines are split on b"\\n" only and passed to SentencePiece as bytes, so a line
with invalid UTF-8 is encoded as SentencePiece encodes it.
"""
import json
import random
import sys

import sentencepiece as spm


def main():
    model, text, out, num_decodes = sys.argv[1:5]
    sp = spm.SentencePieceProcessor(model_file=model)
    n = sp.get_piece_size()
    ref = {
        "version": spm.__version__,
        "vocab_size": n,
        "unk_id": sp.unk_id(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "pad_id": sp.pad_id(),
        "pieces": [sp.id_to_piece(i) for i in range(n)],
        "scores": [sp.get_score(i) for i in range(n)],
        "control": [i for i in range(n) if sp.is_control(i)],
        "unused": [i for i in range(n) if sp.is_unused(i)],
        "byte": [i for i in range(n) if sp.is_byte(i)],
    }
    with open(text, "rb") as f:
        lines = f.read().split(b"\n")
    ref["lines"] = [{"ids": ids, "text": sp.decode(ids)}
                    for ids in (sp.encode(line) for line in lines)]

    # Random id sequences, weighted towards the pieces decoding treats
    # specially: control, unknown, byte and space-led pieces.
    special = ref["control"] + ref["byte"] + [sp.unk_id()]
    special += [i for i in range(n) if ref["pieces"][i].startswith("\u2581")][:50]
    rng = random.Random(1)
    seqs = []
    for _ in range(int(num_decodes)):
        k = rng.randint(0, 8)
        seqs.append([rng.choice(special) if rng.random() < 0.6 else rng.randrange(n)
                     for _ in range(k)])
    ref["decodes"] = [{"ids": ids, "text": sp.decode(ids)} for ids in seqs]
    with open(out, "w") as f:
        json.dump(ref, f)


if __name__ == "__main__":
    main()
