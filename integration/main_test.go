// Package integration runs hookgate end to end on a real Caddy: adapt
// tests, delivery tests against real sinks on loopback, reloads, a crash
// test on a separate process, and the load harness.
package integration

import (
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/hookgate/hookgate"
)

// childEnv makes this test binary act as the caddy command, so tests that
// need a separate process (crash, load) run the very code under test
// without building a second binary. Its value is the argument list,
// separated by unit separators (\x1f).
const childEnv = "HOOKGATE_TEST_CADDY"

func runChild() {
	os.Args = append([]string{"caddy"}, strings.Split(os.Getenv(childEnv), "\x1f")...)
	caddycmd.Main()
}
