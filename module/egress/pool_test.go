package egress

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestProvisionChoices: which policy each choice gets, shared clients,
// and the load errors that name the route.
func TestProvisionChoices(t *testing.T) {
	policies := map[string]*Policy{
		"default": {Allow: []string{"10.0.0.0/8"}},
		"partner": {Allow: []string{"10.20.0.0/16"}},
	}
	out, keys, err := Provision(policies, []Choice{
		{Route: "a"},
		{Route: "b", Name: "partner"},
		{Route: "c", Inline: &Policy{Allow: []string{"192.168.0.0/16"}}},
		{Route: "d", Name: "default"},
	}, "hookgate-test")
	if err != nil {
		t.Fatal(err)
	}
	defer Release(keys)
	want := []string{`egress policy "default"`, `egress policy "partner"`, `inline egress policy of route "c"`, `egress policy "default"`}
	for i, c := range out {
		if c.Label() != want[i] {
			t.Errorf("choice %d uses %s, want %s", i, c.Label(), want[i])
		}
	}
	if out[0] != out[3] || len(keys) != 3 {
		t.Errorf("two choices of one policy got two clients (%d keys)", len(keys))
	}

	for _, tc := range []struct {
		name     string
		policies map[string]*Policy
		choice   Choice
		want     string
	}{
		{"undefined", map[string]*Policy{"partner": {}}, Choice{Route: "erp", Name: "parnter"},
			`route erp: egress policy "parnter" is not defined (defined: partner)`},
		{"name and inline", map[string]*Policy{"partner": {}}, Choice{Route: "erp", Name: "partner", Inline: &Policy{}},
			"route erp: names egress policy"},
		{"broken unused", map[string]*Policy{"unused": {Bind: []string{"203.0.113.7"}}}, Choice{Route: "erp"},
			`egress policy "unused": bind 203.0.113.7`},
		{"bad name", map[string]*Policy{"a b": {}}, Choice{Route: "erp"}, `invalid egress policy name "a b"`},
	} {
		out, keys, err := Provision(tc.policies, []Choice{{Route: "ok"}, tc.choice}, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if out != nil || keys != nil {
			t.Errorf("%s: a failed Provision returned clients or keys", tc.name)
		}
	}
	// The failed runs above acquired the built-in policy for "ok" and
	// must have released it.
	n := 0
	clients.Range(func(_, v any) bool {
		if v.(*Client).Label() == "built-in default egress policy" {
			n++
		}
		return true
	})
	if n != 0 {
		t.Errorf("%d built-in clients still pooled after failed loads", n)
	}
}

// TestTransportAcrossReloads checks the pool: a config that keeps a
// policy unchanged gets the same transport (its connections stay
// pooled), a changed policy gets a new one, and a transport is closed
// once no config uses it.
func TestTransportAcrossReloads(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeTestCA(t, ca)
	load := func(allow string) (*Client, []string) {
		t.Helper()
		out, keys, err := Provision(map[string]*Policy{"default": {Allow: []string{allow}, TLS: &TLS{CA: []string{ca}}}},
			[]Choice{{Route: "a"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		return out[0], keys
	}
	refs := func(keys []string) int {
		n, _ := clients.References(keys[0])
		return n
	}
	old, oldKeys := load("10.0.0.0/8")
	same, sameKeys := load("10.0.0.0/8")
	if same != old || refs(sameKeys) != 2 {
		t.Fatalf("an unchanged policy got a new transport (references %d)", refs(sameKeys))
	}
	Release(oldKeys)
	if refs(sameKeys) != 1 {
		t.Fatalf("references after the old config's release: %d, want 1", refs(sameKeys))
	}

	changed, changedKeys := load("10.1.0.0/16")
	if changed == same {
		t.Fatalf("a changed policy kept the old transport")
	}
	// A renewed CA file with an unchanged config is a change too.
	writeTestCA(t, ca)
	renewed, renewedKeys := load("10.1.0.0/16")
	if renewed == changed {
		t.Fatalf("a policy whose CA file changed kept the old transport")
	}
	Release(sameKeys)
	Release(changedKeys)
	Release(renewedKeys)
	if _, ok := clients.References(sameKeys[0]); ok {
		t.Errorf("transport still pooled after its last config was released")
	}
}
