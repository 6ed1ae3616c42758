package egress

import (
	"net/netip"
)

// addrClass is a range an egress policy denies unless it is allowed.
type addrClass struct {
	prefix netip.Prefix
	name   string
	// guarded classes are not opened by a broader allowed range: only an
	// allowed CIDR inside them (as long as the class prefix, or longer)
	// opens them. Link-local and metadata addresses are guarded, since a
	// hasty `allow 0.0.0.0/0` must not expose cloud credentials.
	guarded bool
}

func class(cidr, name string, guarded bool) addrClass {
	return addrClass{prefix: netip.MustParsePrefix(cidr), name: name, guarded: guarded}
}

// deniedV4 and deniedV6 are the ranges denied by default, from the IANA
// special-purpose address registries (RFC 6890 and successors) plus the
// cloud metadata addresses. Order matters only for the message: an
// address is checked against every class that contains it, and the first
// that is not allowed is named, so more specific classes come first.
var (
	deniedV4 = []addrClass{
		// Cloud metadata and platform endpoints: AWS, GCP, Azure, OpenStack
		// (169.254.169.254), AWS ECS task credentials, Alibaba Cloud, and
		// Azure's wireserver (a public address reachable only inside
		// Azure, where it serves the VM agent).
		class("169.254.169.254/32", "metadata", true),
		class("169.254.170.2/32", "metadata", true),
		class("100.100.100.200/32", "metadata", true),
		class("168.63.129.16/32", "metadata", true),
		class("169.254.0.0/16", "link-local", true),
		class("0.0.0.0/32", "unspecified", false),
		class("255.255.255.255/32", "broadcast", false),
		class("127.0.0.0/8", "loopback", false),
		class("10.0.0.0/8", "private", false),
		class("172.16.0.0/12", "private", false),
		class("192.168.0.0/16", "private", false),
		class("100.64.0.0/10", "cgnat", false),
		class("0.0.0.0/8", "this-network", false),
		class("192.0.0.0/24", "ietf-protocol", false),
		class("192.0.2.0/24", "documentation", false),
		class("198.51.100.0/24", "documentation", false),
		class("203.0.113.0/24", "documentation", false),
		class("198.18.0.0/15", "benchmarking", false),
		class("192.88.99.0/24", "6to4-relay", false),
		class("224.0.0.0/4", "multicast", false),
		class("240.0.0.0/4", "reserved", false),
	}
	deniedV6 = []addrClass{
		class("fd00:ec2::254/128", "metadata", true),
		class("fe80::/10", "link-local", true),
		class("::/128", "unspecified", false),
		class("::1/128", "loopback", false),
		class("fc00::/7", "ula", false),
		class("fec0::/10", "site-local", false),
		class("ff00::/8", "multicast", false),
		class("64:ff9b:1::/48", "nat64-local", false),
		class("100::/64", "discard", false),
		class("2001::/32", "teredo", false),
		class("2001:2::/48", "benchmarking", false),
		class("2001:10::/28", "orchid", false),
		class("2001:20::/28", "orchid", false),
		class("2001:db8::/32", "documentation", false),
		class("3fff::/20", "documentation", false),
		class("5f00::/16", "srv6", false),
		// Everything outside the global unicast range 2000::/3 (IPv4-
		// compatible ::a.b.c.d and other ::/8 forms included). The NAT64
		// prefix 64:ff9b::/96 lies here too, but never reaches this table:
		// it is checked as the IPv4 address it embeds.
		class("::/3", "reserved", false),
		class("4000::/2", "reserved", false),
		class("8000::/1", "reserved", false),
	}
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// reach is what a connection is for: allow_only applies to
// destinations, not to the policy's own proxy.
type reach uint8

const (
	// toDest is a destination: allow_only applies.
	toDest reach = iota
	// toListedName is a destination asked for by a host name allow_only
	// lists: the name passed, the address must still pass the rest.
	toListedName
	// toProxy is the policy's proxy: deny, allow and the default rules
	// apply, allow_only does not.
	toProxy
)

// refusal says why the policy refuses to dial a, or returns "" when a
// may be dialled. It looks through every spelling: IPv4-mapped IPv6 is
// checked as IPv4, NAT64 and 6to4 addresses as the IPv4 address they
// embed (and as themselves), and a zone is ignored (netip's Contains
// never matches a zoned address, which would let fe80::1%eth0 through).
// The rules apply in this order: deny, allow_only (for destinations),
// the default ranges (opened by allow and allow_only CIDRs), the bind
// family. It does not allocate unless it refuses.
func (p *policy) refusal(a netip.Addr, r reach) string {
	a = a.WithZone("").Unmap()
	if !a.IsValid() {
		return "not an IP address"
	}
	v4, form, embeds := netip.Addr{}, "", false
	if a.Is6() {
		v4, form, embeds = embeddedIPv4(a)
	}
	if why := p.denyRefusal(a); why != "" {
		return why
	}
	if embeds {
		if why := p.denyRefusal(v4); why != "" {
			return form + " form of " + v4.String() + ": " + why
		}
	}
	if p.only != nil && r == toDest && !p.only.contains(a) {
		return "not in allow_only"
	}
	if why := p.classRefusal(a); why != "" {
		return why
	}
	if a.Is6() {
		if embeds {
			if why := p.classRefusal(v4); why != "" {
				return form + " form of " + v4.String() + ": " + why
			}
		}
		if p.bind4.IsValid() && !p.bind6.IsValid() {
			return "no IPv6 bind address (the policy binds " + p.bind4.String() + " only)"
		}
	} else if p.bind6.IsValid() && !p.bind4.IsValid() {
		return "no IPv4 bind address (the policy binds " + p.bind6.String() + " only)"
	}
	return ""
}

// denyRefusal applies deny to one unzoned, unmapped address.
func (p *policy) denyRefusal(a netip.Addr) string {
	for _, d := range p.deny {
		if d.Contains(a) {
			return "in deny " + d.String()
		}
	}
	return ""
}

// classRefusal applies the default classes, and the CIDRs that open
// them, to one unzoned, unmapped address.
func (p *policy) classRefusal(a netip.Addr) string {
	table := deniedV4
	if a.Is6() {
		if nat64Prefix.Contains(a) {
			// Its own spelling is the translator's public prefix; what it
			// reaches is the embedded IPv4 address, checked by the caller.
			return ""
		}
		table = deniedV6
	}
	for i := range table {
		c := &table[i]
		if c.prefix.Contains(a) && !p.opens(a, c) {
			return c.name + " " + c.prefix.String() + ", not in allow"
		}
	}
	return ""
}

// opens reports whether an allow (or allow_only) CIDR opens address a
// of class c.
func (p *policy) opens(a netip.Addr, c *addrClass) bool {
	for _, pf := range p.open {
		if pf.Contains(a) && (!c.guarded || pf.Bits() >= c.prefix.Bits()) {
			return true
		}
	}
	return false
}

// embeddedIPv4 returns the IPv4 address a NAT64 (64:ff9b::/96) or 6to4
// (2002::/16) address stands for.
func embeddedIPv4(a netip.Addr) (netip.Addr, string, bool) {
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64", true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4", true
	}
	return netip.Addr{}, "", false
}
