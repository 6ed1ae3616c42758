package egress

import (
	"fmt"
	"net/netip"
	"strings"
)

// allowOnly is a compiled Policy.AllowOnly.
type allowOnly struct {
	cidrs []netip.Prefix
	// hosts are exact names, lowercase, without a trailing dot.
	hosts map[string]struct{}
	// suffixes are the names under a wildcard, with their leading dot:
	// *.partner.example is ".partner.example".
	suffixes []string
}

// CheckAllowOnly checks one allow_only entry: a CIDR or IP address (as
// ParseCIDR reads them), a host name, or *.suffix.
func CheckAllowOnly(entry string) error {
	_, _, err := parseAllowOnly(entry)
	return err
}

// parseAllowOnly reads an entry as a CIDR, or as a host name pattern
// (lowercase, without a trailing dot; "*.x" for a wildcard).
func parseAllowOnly(entry string) (netip.Prefix, string, error) {
	fail := func(why string) error {
		return fmt.Errorf("invalid allow_only entry %q: %s", entry, why)
	}
	if strings.Contains(entry, "/") || strings.Contains(entry, ":") {
		pf, err := ParseCIDR(entry)
		if err != nil {
			return pf, "", fmt.Errorf("invalid allow_only entry %v", err)
		}
		return pf, "", nil
	}
	if a, numeric := hostIP(entry); a.IsValid() || numeric {
		if a.IsValid() && a.String() == entry {
			pf, err := ParseCIDR(entry)
			return pf, "", err
		}
		return netip.Prefix{}, "", fail("a numeric name; write the address in its standard form (127.0.0.2) or a CIDR")
	}
	name := strings.ToLower(strings.TrimSuffix(entry, "."))
	wild := strings.HasPrefix(name, "*.")
	if wild {
		name = name[2:]
	}
	if strings.Contains(name, "*") {
		return netip.Prefix{}, "", fail("a wildcard only as the whole first label, as in *.partner.example")
	}
	if why := badHostName(name); why != "" {
		return netip.Prefix{}, "", fail(why)
	}
	if wild {
		return netip.Prefix{}, "*." + name, nil
	}
	return netip.Prefix{}, name, nil
}

// badHostName says what is wrong with a lowercase host name, or "".
func badHostName(name string) string {
	const want = "expected a CIDR, an IP address, a host name (partner.example) or *.suffix (*.partner.example)"
	if name == "" || len(name) > 253 {
		return want
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return want
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c >= 0x80 {
				return "write an international name in its ASCII (xn--) form"
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return want
			}
		}
	}
	return ""
}

// compileAllowOnly compiles checked entries; nil when there are none.
func compileAllowOnly(entries []string) *allowOnly {
	if len(entries) == 0 {
		return nil
	}
	o := &allowOnly{hosts: make(map[string]struct{})}
	for _, e := range entries {
		pf, name, _ := parseAllowOnly(e)
		switch {
		case pf.IsValid():
			o.cidrs = append(o.cidrs, pf)
		case strings.HasPrefix(name, "*."):
			o.suffixes = append(o.suffixes, name[1:])
		default:
			o.hosts[name] = struct{}{}
		}
	}
	return o
}

// lists reports whether a host entry matches host, a name as a request
// carries it (any case, maybe with a trailing dot).
func (o *allowOnly) lists(host string) bool {
	if len(o.hosts) == 0 && len(o.suffixes) == 0 {
		return false
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if _, ok := o.hosts[name]; ok {
		return true
	}
	for _, suf := range o.suffixes {
		// len(name) > len(suf): the suffix needs a label in front of it,
		// so *.partner.example does not match partner.example.
		if len(name) > len(suf) && strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// contains reports whether a CIDR entry covers a (or, for a NAT64 or
// 6to4 address, the IPv4 address it embeds).
func (o *allowOnly) contains(a netip.Addr) bool {
	for _, pf := range o.cidrs {
		if pf.Contains(a) {
			return true
		}
	}
	if a.Is6() {
		if v4, _, ok := embeddedIPv4(a); ok {
			for _, pf := range o.cidrs {
				if pf.Contains(v4) {
					return true
				}
			}
		}
	}
	return false
}
