package nftables

import (
	"fmt"
	"strings"

	gnft "github.com/google/nftables"

	"github.com/svcproxy/svcproxy/internal/model"
)

// LocalhostRejected reads how many localhost NodePort packets of each
// protocol a family's table has rejected (its named counters; none when
// the table has none). netns as Syncer.NetNS.
func LocalhostRejected(v6 bool, netns int) (map[model.Protocol]uint64, error) {
	opts := []gnft.ConnOption{}
	if netns != 0 {
		opts = append(opts, gnft.WithNetNSFd(netns))
	}
	c, err := gnft.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	t := (&Syncer{Options: Options{IPv6: v6}}).table()
	objs, err := c.GetObjects(t)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list counters of %s %s: %w", ipWord(v6), TableName, err)
	}
	out := map[model.Protocol]uint64{}
	for _, o := range objs {
		if co, ok := o.(*gnft.CounterObj); ok && co.Table.Name == TableName {
			if p, ok := strings.CutPrefix(co.Name, localhostRejectCounterPre); ok {
				out[model.Protocol(p)] = co.Packets
			}
		}
	}
	return out, nil
}
