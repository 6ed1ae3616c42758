package egress

import (
	"net/netip"
	"strconv"
	"strings"
)

// hostIP reads a host name the way the resolvers and proxies that may
// see it do. A standard IP literal stands for itself. So does a legacy
// IPv4 spelling that C's inet_aton accepts (and with it getaddrinfo,
// curl and proxies such as Squid): 1 to 4 dot-separated parts, each
// decimal, octal (leading 0) or hex (0x), the last part filling the
// remaining bytes, so 2130706434, 127.2, 0x7f000002 and 0177.0.0.2 all
// mean 127.0.0.2. A trailing dot is ignored, as URL parsers do.
//
// numeric reports a name that looks like an address (its last label is
// a number, which no real host name's is) but is not a valid one, such
// as 256.1.1.1 or 1.2.3.4.5: what it means differs from one resolver to
// the next, so it is refused rather than guessed.
func hostIP(host string) (a netip.Addr, numeric bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, false
	}
	name := strings.TrimSuffix(host, ".")
	if !endsInNumber(name) {
		return netip.Addr{}, false
	}
	if a, ok := inetAton(name); ok {
		return a, false
	}
	return netip.Addr{}, true
}

// isName reports whether host is a host name to resolve: neither an IP
// address in any spelling hostIP reads nor a numeric name it refuses.
func isName(host string) bool {
	a, numeric := hostIP(host)
	return !a.IsValid() && !numeric
}

// endsInNumber reports whether the last label of name is all digits or
// a 0x hex number (the WHATWG URL standard's test for an IPv4 host).
func endsInNumber(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") || strings.HasPrefix(last, "0X") {
		last = last[2:]
		for i := 0; i < len(last); i++ {
			if !isHex(last[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// inetAton parses s with inet_aton's rules: a, a.b (8.24 bits), a.b.c
// (8.8.16) or a.b.c.d, each part decimal, octal with a leading 0, or hex
// with 0x.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		if p == "" || p[0] == '+' || p[0] == '-' || p[0] == '_' || strings.Contains(p, "_") {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}
