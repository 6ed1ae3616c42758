package module

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

// ExpandNonEmpty expands Caddy's global placeholders ({env.*}, {file.*})
// in vals at config load, and refuses a value that comes out empty: an
// unset variable must fail the load, not become an empty secret or token
// that anything would match. what names the option in the error; the
// values themselves never appear in it.
func ExpandNonEmpty(what string, vals []string) ([]string, error) {
	repl := caddy.NewReplacer()
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = repl.ReplaceKnown(v, "")
		if out[i] == "" {
			return nil, fmt.Errorf("%s %d is empty (is its environment variable or file set?)", what, i+1)
		}
	}
	return out, nil
}
