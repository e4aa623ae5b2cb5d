package tokenizer

import "sort"

// trie is a read-only byte trie over a set of strings, each with an int32
// value. It enumerates the keys that are prefixes of a text, shortest first,
// which is the order in which SentencePiece's darts-clone tries report them
// (and so the order its Viterbi search breaks ties in).
type trie struct {
	root  [256]int32 // child of the root for each byte, or -1
	first []int32    // children of node i are edges first[i]:first[i+1]
	label []byte     // edge labels, sorted within a node
	child []int32    // edge targets
	value []int32    // value of node i, or -1 when no key ends there
}

// newTrie builds a trie of keys (non-empty, distinct) with their values.
func newTrie(keys []string, values []int32) *trie {
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })

	t := &trie{}
	for i := range t.root {
		t.root[i] = -1
	}
	// Breadth-first over ranges of sorted keys sharing a prefix of length depth:
	// each range is one node; its children are the sub-ranges by next byte.
	type span struct{ lo, hi, depth int }
	t.value = append(t.value, -1) // node 0: the root
	queue := []span{{0, len(idx), 0}}
	for q := 0; q < len(queue); q++ {
		s := queue[q]
		node := int32(q)
		t.first = append(t.first, int32(len(t.label)))
		lo := s.lo
		if lo < s.hi && len(keys[idx[lo]]) == s.depth {
			lo++ // the key that ends at this node; its value is set below
		}
		for lo < s.hi {
			c := keys[idx[lo]][s.depth]
			hi := lo
			for hi < s.hi && keys[idx[hi]][s.depth] == c {
				hi++
			}
			id := int32(len(queue))
			queue = append(queue, span{lo, hi, s.depth + 1})
			v := int32(-1)
			if len(keys[idx[lo]]) == s.depth+1 {
				v = values[idx[lo]]
			}
			t.value = append(t.value, v)
			t.label = append(t.label, c)
			t.child = append(t.child, id)
			if node == 0 {
				t.root[c] = id
			}
			lo = hi
		}
	}
	t.first = append(t.first, int32(len(t.label)))
	return t
}

// next returns the child of node along byte c, or -1.
func (t *trie) next(node int32, c byte) int32 {
	if node == 0 {
		return t.root[c]
	}
	lo, hi := t.first[node], t.first[node+1]
	for lo < hi {
		m := (lo + hi) / 2
		switch l := t.label[m]; {
		case l == c:
			return t.child[m]
		case l < c:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}

// longestPrefix returns the length of the longest key that is a prefix of s
// and its value, or 0, -1 when there is none.
func (t *trie) longestPrefix(s string) (int, int32) {
	n, v := 0, int32(-1)
	node := int32(0)
	for i := 0; i < len(s); i++ {
		if node = t.next(node, s[i]); node < 0 {
			break
		}
		if t.value[node] >= 0 {
			n, v = i+1, t.value[node]
		}
	}
	return n, v
}
