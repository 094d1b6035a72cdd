package nftables

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// upstreamHairpin is upstream kube-proxy's hairpin set, as it defines it.
var upstreamHairpin = Set{Name: "hairpin-connections", Keys: []string{"addr", "addr", "proto", "port"}, Comment: "service hairpin connections"}

// Release hands the table over to whichever proxy starts next, in one
// transaction so that no Service is without rules at any moment: svcproxy's
// own objects that upstream kube-proxy does not know (the endpoints maps,
// the hairpin set) go, Service chains pick their endpoint by a numgen
// ladder instead, and hairpin traffic is matched in upstream's
// hairpin-connections set. Upstream kube-proxy then writes its table over
// this one and leaves nothing of svcproxy's behind; a new svcproxy finds a
// table it did not write and replaces it whole (see read). Without a sync
// to start from, there is nothing to hand over.
func (s *Syncer) Release(ctx context.Context) error {
	if s.last == nil || s.fake != nil {
		return nil
	}
	if err := s.connect(); err != nil {
		return err
	}
	ks, err := s.read()
	if err != nil {
		return fmt.Errorf("read the %s table: %w", s.tableFamily(), err)
	}
	if ks.foreign {
		return nil
	}
	b := s.newEmitter()
	written := map[string]bool{}
	hairpin := map[Element]bool{}
	for i := range s.last.Services {
		sp := s.last.Services[i]
		if sp.ClusterIP.Is6() != s.Options.IPv6 {
			continue
		}
		svc := servicePort(sp, s.node, s.Options, nil)
		for _, c := range svc.Chains {
			b.addChain(c.Name)
			if ks.chains[c.Name] {
				b.flushChain(c.Name)
			}
			b.addRules(c.Name, c.Rules)
			written[c.Name] = true
		}
		// Upstream's set has the port too: each of the endpoints whose
		// address the Service has in svcproxy's.
		local := map[netip.Addr]bool{}
		for _, e := range svc.Elements {
			if e.Set == setHairpin {
				local[e.Addr] = true
			}
		}
		for _, ep := range sp.Endpoints {
			if local[ep.IP] {
				hairpin[Element{Addr: ep.IP, Proto: strings.ToLower(string(sp.Protocol)), Port: uint16(ep.Port)}] = true
			}
		}
	}
	// Chains of Services gone since (a sync cut short) may still use the
	// maps.
	for c := range ks.chains {
		if _, perService := chainBase(c); perService && !written[c] {
			b.flushChain(c)
		}
	}
	b.addSet(upstreamHairpin)
	if len(hairpin) > 0 {
		b.addElements(upstreamHairpin, slices.Collect(maps.Keys(hairpin)))
	}
	b.flushChain("nat-postrouting")
	b.addRules("nat-postrouting", []Rule{
		rule(matchCtDNAT{}, matchSet{[]keyField{fSaddr, fDaddr, fL4Proto, fDport}, upstreamHairpin.Name}, markOr{s.Options.Mark()}),
		rule(jump(chainMasquerading)),
	})
	b.deleteSet(Set{Name: setHairpin})
	for m := range ks.endpointMaps {
		b.deleteSet(endpointMapSet(m))
	}
	if err := b.commit(); err != nil {
		return fmt.Errorf("hand the %s table over: %w", s.tableFamily(), err)
	}
	s.kernel = nil
	return nil
}
