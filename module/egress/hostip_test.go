package egress

import (
	"bufio"
	"github.com/hookgate/hookgate/internal/testnet"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestHostIP(t *testing.T) {
	for _, tc := range []struct {
		host    string
		addr    string // "" when a name
		numeric bool   // refused as a numeric name that is no address
	}{
		// Legacy IPv4 spellings mean what inet_aton makes of them.
		{"2130706434", "127.0.0.2", false},
		{"127.2", "127.0.0.2", false},
		{"127.0.2", "127.0.0.2", false},
		{"0x7f000002", "127.0.0.2", false},
		{"0X7F000002", "127.0.0.2", false},
		{"0177.0.0.2", "127.0.0.2", false},
		{"0x7f.0.0.2", "127.0.0.2", false},
		{"0x7f.1", "127.0.0.1", false},
		{"127.1.", "127.0.0.1", false},
		{"0", "0.0.0.0", false},
		{"017700000001", "127.0.0.1", false},
		{"0xa9fea9fe", "169.254.169.254", false},
		{"2852039166", "169.254.169.254", false},
		{"10.0x1.0377", "10.1.0.255", false},
		{"8.8.8.8", "8.8.8.8", false},
		{"::1", "::1", false},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1", false},
		// Numeric-looking, but no address: refused, not guessed.
		{"256.1.1.1", "", true},
		{"1.2.3.4.5", "", true},
		{"4294967296", "", true},
		{"127.16777216", "", true},
		{"08.0.0.1", "", true},
		{"0x", "", true},
		{"1.0x", "", true},
		{"example.123", "", true},
		{"127.0.0.1..", "", false}, // last label empty: a (bad) name
		// Names, including ones that start with digits.
		{"1password.com", "", false},
		{"123.example", "", false},
		{"1e100.net", "", false},
		{"0x7f.example", "", false},
		{"partner.example", "", false},
		{"example.0x1g", "", false},
		{"localhost", "", false},
		{"xn--bcher-kva.example", "", false},
	} {
		a, numeric := hostIP(tc.host)
		got := ""
		if a.IsValid() {
			got = a.String()
		}
		if got != tc.addr || numeric != tc.numeric {
			t.Errorf("hostIP(%q) = %q, numeric %v; want %q, %v", tc.host, got, numeric, tc.addr, tc.numeric)
		}
		if isName(tc.host) != (tc.addr == "" && !tc.numeric) {
			t.Errorf("isName(%q) = %v", tc.host, isName(tc.host))
		}
	}
}

// TestProxyResolvesLegacySpellings: with proxy_resolves, a host that is
// an address in a legacy spelling is checked here (and refused without
// the proxy hearing of it), an allowed one is sent to the proxy as the
// address it means, and real names still go to the proxy by name.
func TestProxyResolvesLegacySpellings(t *testing.T) {
	var mu sync.Mutex
	var connects []string
	proxy := testnet.RawListener(t, func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		mu.Lock()
		connects = append(connects, req.Host)
		mu.Unlock()
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
	})
	p := testPolicy(t, Policy{Allow: []string{"127.0.0.1/32"}, Proxy: "http://" + proxy, ProxyResolves: true})
	c := newClient(p)
	defer c.Destruct()
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := connects
		connects = nil
		return out
	}
	for _, tc := range []struct {
		host    string
		refusal string // our own refusal; "" when the proxy is asked
		connect string // the CONNECT target the proxy saw
	}{
		{"2130706434", "2130706434 (127.0.0.2): loopback 127.0.0.0/8, not in allow", ""},
		{"127.2", "127.2 (127.0.0.2): loopback", ""},
		{"0x7f000002", "0x7f000002 (127.0.0.2): loopback", ""},
		{"0177.0.0.2", "0177.0.0.2 (127.0.0.2): loopback", ""},
		{"0xa9fea9fe", "0xa9fea9fe (169.254.169.254): metadata", ""},
		{"256.1.1.1", "256.1.1.1: a numeric host name that is not a valid IP address", ""},
		{"example.123", "a numeric host name", ""},
		// Allowed: the proxy is asked for the address, not the spelling.
		{"127.1", "", "127.0.0.1:9"},
		{"0x7f000001", "", "127.0.0.1:9"},
		// Names go to the proxy by name.
		{"1password.com", "", "1password.com:9"},
		{"123.example", "", "123.example:9"},
	} {
		err := post(c, "http://"+tc.host+":9/hook")
		got := seen()
		switch {
		case tc.refusal != "":
			if !isDenied(err) || !strings.Contains(err.Error(), tc.refusal) {
				t.Errorf("%s: %v, want a refusal saying %q", tc.host, err, tc.refusal)
			}
			if len(got) != 0 {
				t.Errorf("%s: the proxy was asked to CONNECT %v", tc.host, got)
			}
		default:
			// The proxy answers 403: its refusal, after our check.
			if !isDenied(err) || !strings.Contains(err.Error(), "refused CONNECT") {
				t.Errorf("%s: %v, want the proxy's refusal", tc.host, err)
			}
			if len(got) != 1 || got[0] != tc.connect {
				t.Errorf("%s: the proxy saw CONNECT %v, want %s", tc.host, got, tc.connect)
			}
		}
	}
}

// TestLegacySpellingDirect: without a proxy, a legacy spelling is dialled
// as the address it means, after the same check.
func TestLegacySpellingDirect(t *testing.T) {
	srv := newCountingServer(t, "127.0.0.1:0", false)
	_, port, _ := net.SplitHostPort(srv.addr)
	c := newClient(testPolicy(t, Policy{Allow: []string{"127.0.0.1/32"}}))
	defer c.Destruct()
	if err := post(c, "http://0x7f000001:"+port+"/hook"); err != nil || srv.reqs.Load() != 1 {
		t.Fatalf("0x7f000001 with 127.0.0.1/32 allowed: %v, %d requests", err, srv.reqs.Load())
	}
	if err := post(c, "http://127.2:"+port+"/hook"); !isDenied(err) || !strings.Contains(err.Error(), "127.2 (127.0.0.2): loopback") {
		t.Fatalf("127.2: %v, want a refusal", err)
	}
}
