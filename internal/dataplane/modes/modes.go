// Package modes lists the proxy modes svcproxy has, by name.
package modes

import (
	"fmt"

	"github.com/svcproxy/svcproxy/internal/dataplane"
	"github.com/svcproxy/svcproxy/internal/dataplane/iptables"
	"github.com/svcproxy/svcproxy/internal/dataplane/nftables"
)

// All are the modes, the default first.
var All = []dataplane.Mode{iptables.Mode, nftables.Mode}

// ByName returns the mode named name ("" is the default).
func ByName(name string) (dataplane.Mode, error) {
	if name == "" {
		return All[0], nil
	}
	for _, m := range All {
		if m.Name == name {
			return m, nil
		}
	}
	return dataplane.Mode{}, fmt.Errorf("proxy mode %q: must be \"iptables\" or \"nftables\"", name)
}

// Installed are the syncers that can remove every mode's rules from this
// node (cleanup).
func Installed() dataplane.Families {
	var fs dataplane.Families
	for _, m := range All {
		fs = append(fs, m.Installed()...)
	}
	return fs
}

// Others are the modes other than m.
func Others(m dataplane.Mode) []dataplane.Mode {
	var out []dataplane.Mode
	for _, o := range All {
		if o.Name != m.Name {
			out = append(out, o)
		}
	}
	return out
}
