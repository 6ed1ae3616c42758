package module

import (
	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookgate/hookgate/module/egress"
)

// provisionEgress compiles the egress policies and gives every route the
// client of its policy (see the egress package). Routes that share a
// policy share one client.
func (a *App) provisionEgress() error {
	choices := make([]egress.Choice, len(a.routeOrder))
	for i, name := range a.routeOrder {
		rc := a.Routes[name]
		choices[i] = egress.Choice{Route: name, Name: rc.Egress, Inline: rc.EgressPolicy}
	}
	clients, keys, err := egress.Provision(a.Egress, choices, userAgent)
	if err != nil {
		return err
	}
	a.egressKeys = keys
	wrapped := make(map[*egress.Client]*retryablehttp.Client, len(clients))
	for i, name := range a.routeOrder {
		c := clients[i]
		rc, ok := wrapped[c]
		if !ok {
			rc = newClient(c.HTTP())
			wrapped[c] = rc
		}
		r := a.routes[name]
		r.client, r.egress = rc, c
	}
	return nil
}
