package module

import (
	_ "embed"
	"net/http"
)

// openAPISpec is the OpenAPI 3.1 description of the ingest API and the
// admin API. A test checks it against the handlers both ways: every
// endpoint in adminEndpoints is described, and every described answer
// has the fields the handlers write.
//
//go:embed openapi.json
var openAPISpec []byte

// OpenAPI returns the OpenAPI 3.1 description (JSON) of the ingest API
// and the admin API, as GET /webhooks/openapi.json serves it.
func OpenAPI() []byte { return openAPISpec }

// GET /webhooks/openapi.json: answered whether or not the webhooks app
// is configured.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPISpec)
}
