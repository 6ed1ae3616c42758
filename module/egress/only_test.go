package egress

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAllowOnly(t *testing.T) {
	for _, tc := range []struct {
		entry string
		want  string // "" valid, else a substring of the error
	}{
		{"10.20.0.0/16", ""},
		{"127.0.0.2", ""},
		{"::1", ""},
		{"fd00:20::/32", ""},
		{"partner.example", ""},
		{"*.partner.example", ""},
		{"Partner.Example.", ""},
		{"api-1.partner_x.example", ""},
		{"*.internal", ""},
		{"1password.com", ""},
		{"123.example", ""},
		{"10.0.0.1/8", "host bits are set"},
		{"10.0.0.0/33", "expected a CIDR"},
		{"*", "a wildcard only as the whole first label"},
		{"*.", "a wildcard only as the whole first label"},
		{"a.*.example", "a wildcard only as the whole first label"},
		{"*partner.example", "a wildcard only as the whole first label"},
		{"partner..example", "expected a CIDR"},
		{"-bad.example", "expected a CIDR"},
		{"a b.example", "expected a CIDR"},
		{"https://partner.example", "expected a CIDR"},
		{"0x7f000001", "a numeric name; write the address in its standard form"},
		{"127.1", "a numeric name"},
		{"example.123", "a numeric name"},
		{"bücher.example", "xn--"},
	} {
		err := CheckAllowOnly(tc.entry)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want valid", tc.entry, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error saying %q", tc.entry, err, tc.want)
		case err != nil && !strings.Contains(err.Error(), `allow_only entry "`+tc.entry+`"`):
			t.Errorf("%q: error %q does not quote the entry", tc.entry, err)
		}
	}
}

func TestAllowOnlyHostMatch(t *testing.T) {
	o := compileAllowOnly([]string{"*.partner.example", "api.other.example", "Mixed.Example."})
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"a.partner.example", true},
		{"a.b.partner.example", true},
		{"A.Partner.EXAMPLE", true},
		{"a.partner.example.", true},
		{"partner.example", false}, // the apex is not a subdomain
		{".partner.example", false},
		{"xpartner.example", false},
		{"a.xpartner.example", false},
		{"a.partner.example.evil", false},
		{"partner.example.com", false},
		{"api.other.example", true},
		{"API.other.example.", true},
		{"x.api.other.example", false}, // an exact entry has no subdomains
		{"other.example", false},
		{"mixed.example", true},
		{"127.0.0.1", false},
	} {
		if got := o.lists(tc.host); got != tc.want {
			t.Errorf("lists(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestAllowOnlyAddressRules: how allow_only combines with deny, allow and
// the default ranges, per address and per reach.
func TestAllowOnlyAddressRules(t *testing.T) {
	only := testPolicy(t, Policy{
		AllowOnly: []string{"127.0.0.2/32", "8.8.8.8", "169.254.0.0/16", "partner.example"},
		Allow:     []string{"10.20.0.0/16"},
		Deny:      []string{"127.0.0.2/32", "9.9.9.9"},
	})
	for _, tc := range []struct {
		addr string
		r    reach
		want string // "" allowed
	}{
		// CIDR entries: the address itself decides.
		{"8.8.8.8", toDest, ""},
		{"64:ff9b::808:808", toDest, ""}, // NAT64 of 8.8.8.8
		{"::ffff:8.8.8.8", toDest, ""},
		{"1.1.1.1", toDest, "not in allow_only"}, // public, but not listed
		{"10.20.1.1", toDest, "not in allow_only"},
		{"127.0.0.3", toDest, "not in allow_only"},
		// deny wins, even over a listed CIDR.
		{"127.0.0.2", toDest, "in deny 127.0.0.2/32"},
		{"9.9.9.9", toListedName, "in deny 9.9.9.9/32"},
		// A listed CIDR opens what it covers, guarded ranges excepted.
		{"169.254.1.1", toDest, ""},
		{"169.254.169.254", toDest, "metadata 169.254.169.254/32, not in allow"},
		// A listed name: public addresses pass, the default rules hold,
		// and allow opens a private range for it.
		{"1.1.1.1", toListedName, ""},
		{"10.20.1.1", toListedName, ""},
		{"10.21.1.1", toListedName, "private 10.0.0.0/8, not in allow"},
		{"127.0.0.3", toListedName, "loopback 127.0.0.0/8, not in allow"},
		// The proxy is no destination.
		{"1.1.1.1", toProxy, ""},
		{"127.0.0.3", toProxy, "loopback"},
	} {
		got := only.refusal(netip.MustParseAddr(tc.addr), tc.r)
		if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s (reach %d): refusal %q, want %q", tc.addr, tc.r, got, tc.want)
		}
	}
	// Without allow_only, nothing changes.
	plain := testPolicy(t, Policy{})
	if why := plain.refusal(netip.MustParseAddr("1.1.1.1"), toDest); why != "" {
		t.Errorf("no allow_only: 1.1.1.1 refused: %s", why)
	}
}

// TestAllowOnlyDial: real connections on loopback. A listed address is
// dialled; an unlisted one is refused with no connection at its sink,
// whichever way it is reached; a listed name still needs its address to
// pass the default rules.
func TestAllowOnlyDial(t *testing.T) {
	listed := newCountingServer(t, "127.0.0.1:0", true)
	_, port, _ := net.SplitHostPort(listed.addr)
	unlisted := newCountingServer(t, "127.0.0.2:"+port, true)
	opened := newCountingServer(t, "127.0.0.3:"+port, true)

	p := testPolicy(t, Policy{
		AllowOnly: []string{"127.0.0.1/32", "partner.test", "*.partner.test"},
		Allow:     []string{"127.0.0.3/32"},
	})
	names := map[string]string{
		"partner.test":      "127.0.0.2", // listed name, loopback not opened
		"api.partner.test":  "127.0.0.3", // listed name, opened by allow
		"other.test":        "127.0.0.3", // allow does not list it
		"partner.test.evil": "127.0.0.3",
		"anything.test":     "127.0.0.1", // a listed CIDR matches any name
	}
	p.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr(names[host])}, nil
	}
	c := newClient(p)
	defer c.Destruct()
	for _, tc := range []struct {
		host string
		want string // "" delivered, else a substring of the refusal
	}{
		{"127.0.0.1", ""},
		{"127.0.0.2", "127.0.0.2: not in allow_only (test policy)"},
		{"0x7f000002", "0x7f000002 (127.0.0.2): not in allow_only"},
		{"127.0.0.3", "127.0.0.3: not in allow_only"},
		{"partner.test", "partner.test resolved to 127.0.0.2: loopback 127.0.0.0/8, not in allow"},
		{"api.partner.test", ""},
		{"other.test", "other.test resolved to 127.0.0.3: not in allow_only"},
		{"partner.test.evil", "not in allow_only"},
		{"anything.test", ""},
	} {
		err := post(c, "http://"+net.JoinHostPort(tc.host, port)+"/hook")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want delivered", tc.host, err)
		case tc.want != "" && (!isDenied(err) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal saying %q", tc.host, err, tc.want)
		}
	}
	if n := unlisted.conns.Load(); n != 0 {
		t.Errorf("the unlisted address got %d connections", n)
	}
	if n := listed.reqs.Load(); n != 2 {
		t.Errorf("the listed address got %d requests, want 2", n)
	}
	if n := opened.reqs.Load(); n != 1 {
		t.Errorf("127.0.0.3 got %d requests, want 1 (api.partner.test only)", n)
	}
}
