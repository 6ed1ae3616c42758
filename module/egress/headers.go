package egress

import "strings"

// sensitiveHeaders are never kept with an inbound event.
var sensitiveHeaders = map[string]struct{}{
	"Authorization": {}, "Proxy-Authorization": {}, "Cookie": {}, "Set-Cookie": {},
}

// sensitiveWords mark a header name as a likely credential: X-Gitlab-Token,
// X-Api-Key, X-Hub-Signature-256, X-Shopify-Hmac-Sha256 carries "hmac"...
var sensitiveWords = []string{"token", "secret", "key", "signature", "password", "auth", "session", "credential", "hmac"}

// SensitiveHeader reports whether a header (canonical name) may carry a
// credential, and so is never stored with an inbound event or shown by
// the admin API, and does not follow a delivery's redirect to another
// host.
func SensitiveHeader(name string) bool {
	if _, ok := sensitiveHeaders[name]; ok {
		return true
	}
	lower := strings.ToLower(name)
	for _, w := range sensitiveWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}
