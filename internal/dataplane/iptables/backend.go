package iptables

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"sync"
)

// Backend picks the iptables backend (legacy or nft) of this node the way
// upstream's image does (iptables-wrapper): the one where kubelet left its
// hint chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY), else the one that
// holds more rules; nft on a tie, and when only one is installed, that one.
// Writing svcproxy's rules to the other backend would leave two rule sets
// the kernel both applies. "" means the distribution's default
// (iptables-save, iptables-restore), when neither versioned tool exists.
// prefix runs the tools through another command (tests: ip netns exec).
func Backend(ctx context.Context, prefix ...string) string {
	save := func(backend string) ([]byte, bool) {
		args := append(slices.Clone(prefix), "iptables-"+backend+"-save")
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		return out, err == nil
	}
	nft, haveNft := save("nft")
	legacy, haveLegacy := save("legacy")
	return pickBackend(nft, haveNft, legacy, haveLegacy)
}

func pickBackend(nft []byte, haveNft bool, legacy []byte, haveLegacy bool) string {
	switch {
	case !haveNft && !haveLegacy:
		return ""
	case !haveLegacy:
		return "nft"
	case !haveNft:
		return "legacy"
	}
	hinted := func(dump []byte) bool {
		return bytes.Contains(dump, []byte(":KUBE-IPTABLES-HINT")) || bytes.Contains(dump, []byte(":KUBE-KUBELET-CANARY"))
	}
	switch {
	case hinted(nft):
		return "nft"
	case hinted(legacy):
		return "legacy"
	case ruleCount(legacy) > ruleCount(nft):
		return "legacy"
	}
	return "nft"
}

// ruleCount is how many rules an iptables-save dump holds, in all tables.
func ruleCount(dump []byte) int {
	byTable := map[string]int{}
	countRuleLines(dump, byTable)
	n := 0
	for _, c := range byTable {
		n += c
	}
	return n
}

// ForBackend is the Exec of one backend ("" keeps the default tools).
func ForBackend(backend string, v6 bool) Exec {
	family := "iptables"
	if v6 {
		family = "ip6tables"
	}
	if backend == "" {
		if v6 {
			return IPv6Exec
		}
		return Exec{}
	}
	return Exec{SaveCmd: family + "-" + backend + "-save", RestoreCmd: family + "-" + backend + "-restore"}
}

// detectedBackend is Backend, found once per process.
var detectedBackend = sync.OnceValue(func() string { return Backend(context.Background()) })
