// Package caddyfile holds hookgate's Caddyfile syntax: the `webhooks`
// global option, which configures the webhooks app, and the
// `webhook_ingest` handler directive. It turns Caddyfile tokens into the
// JSON config types of package module, which itself knows nothing of the
// Caddyfile; everything here has a JSON equivalent (`caddy adapt`).
//
// The global option (a repeated `webhooks` block is merged into the
// first; a route or a single-value option given twice is an error):
//
//	webhooks {
//		storage        <dir>
//		retention      <duration>
//		dead_retention <duration>
//		dedupe_window  <duration>
//		max_pending    <int>
//		keep_unmatched
//
//		route <name> {
//			description <text>
//			topics      <pattern...>
//			url         <url>
//			header      <name> <value>
//			timeout     <duration>
//			concurrency <int>
//			retry {
//				schedule <duration...>
//				attempts <int>
//				backoff  <min> <max>
//				max_age  <duration>
//			}
//		}
//	}
//
// A route name is 1–64 characters of A-Z a-z 0-9 _ - . ; url and at least
// one topic are required. topics and header may repeat and append; header
// names are canonicalised (x-source becomes X-Source). A retry block uses
// either schedule or attempts (optionally with backoff), not both.
// Durations take Caddy's units (5s, 30m, 72h, 3d) and must be positive;
// counts must be positive too. An omitted option keeps the default
// documented on the config type.
//
// The handler directive, ordered before reverse_proxy so that no `order`
// line is needed:
//
//	webhook_ingest [<matcher>] {
//		max_body  <size>
//		max_batch <int>
//		auth bearer <token...>
//	}
//
// Sizes take units (1MiB, 512KB, 1048576). auth may repeat; each bearer
// token is accepted.
package caddyfile
