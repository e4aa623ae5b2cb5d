package tokenizer_test

import (
	"fmt"

	"gitee.com/gidean/conv-linn/tokenizer"
)

// Encode and Decode with a small unigram model (400 pieces, no normalization,
// a user-defined symbol <sep>) trained on the Shakespeare corpus.
func Example() {
	m, err := tokenizer.Load("testdata/unigram_identity.model")
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := m.Encode("To be, or not to be<sep>")
	fmt.Println(ids)
	for _, id := range ids {
		fmt.Printf("%s|", m.IDToPiece(id))
	}
	fmt.Println()
	text, err := m.Decode(ids)
	fmt.Printf("%q %v\n", text, err)
	fmt.Println(m.VocabSize(), m.UnkID(), m.BOSID(), m.EOSID(), m.PadID())
	// Output:
	// [6 39 9 62 10 6 45 6 16 9 11 40 62 4]
	// ▁|T|o|▁be|,|▁|or|▁|n|o|t|▁to|▁be|<sep>|
	// "To be, or not to be<sep>" <nil>
	// 400 0 1 2 -1
}
