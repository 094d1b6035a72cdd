package nftables

import (
	"encoding/hex"
	"testing"
)

// The user data is byte for byte what nft 1.0.6 writes for
//
//	map m { typeof numgen random mod 16384 : ip daddr . th dport; flags interval; comment "..."; }
//
// (and ip6 daddr), read back from the kernel with a GETSET dump.
func TestEndpointsUserdataIsNfts(t *testing.T) {
	const comment = "Service chains endpoints, by numgen value"
	const (
		v4 = "000401000000010400000000031a0004170000000112000401000000010400400000020400000000043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c00040b000000010402000000060400000000072a5365727669636520636861696e7320656e64706f696e74732c206279206e756d67656e2076616c756500"
		v6 = "000401000000010400000000031a0004170000000112000401000000010400400000020400000000043400040d000000012c0014000407000000010c00040d0000000104090000000114000407000000010c00040b000000010402000000060400000000072a5365727669636520636861696e7320656e64706f696e74732c206279206e756d67656e2076616c756500"
	)
	for _, tt := range []struct {
		v6   bool
		want string
	}{{false, v4}, {true, v6}} {
		if got := hex.EncodeToString(endpointsUserdata(tt.v6, comment)); got != tt.want {
			t.Errorf("v6=%v:\n got %s\nwant %s", tt.v6, got, tt.want)
		}
	}
}
