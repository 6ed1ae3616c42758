package hookgate

import (
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// A Caddy built with this package offers `caddy webhooks-key`: the command
// lives in module/signing and is registered by that package's init, which
// runs only because something this package imports imports it.
func TestWebhooksKeyCommandRegistered(t *testing.T) {
	if _, ok := caddycmd.Commands()["webhooks-key"]; !ok {
		t.Fatal("webhooks-key is not registered in a build with github.com/hookgate/hookgate")
	}
}
