package model

import "sync"

// Interner hands out one copy of each distinct string, so that the node
// names 100k endpoints repeat are held once. It is safe for concurrent use.
type Interner struct {
	mu   sync.Mutex
	strs map[string]string
}

func (in *Interner) intern(s string) string {
	if in == nil {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if q, ok := in.strs[s]; ok {
		return q
	}
	if in.strs == nil || len(in.strs) >= maxInterned {
		// Started afresh now and then, so that the names of nodes long gone
		// (autoscaling) are not kept forever.
		in.strs = map[string]string{}
	}
	in.strs[s] = s
	return s
}

// maxInterned bounds an Interner: more node names than a cluster has nodes.
const maxInterned = 10000
