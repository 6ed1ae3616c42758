// Package caddyfile holds hookgate's Caddyfile syntax: the `webhooks`
// global option, which configures the webhooks app, and the
// `webhook_ingest` and `webhook_console` handler directives. It turns
// Caddyfile tokens into the JSON config types of packages module and
// module/console, which know nothing of the Caddyfile; everything here
// has a JSON equivalent (`caddy adapt`).
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
//		min_free       <size>
//		max_storage    <size>
//		keep_unmatched
//
//		egress <name> {
//			bind   <ip...>
//			allow  <cidr|ip...>
//			deny   <cidr|ip...>
//			allow_only <cidr|ip|host|*.suffix...>
//			proxy  <http://|https://[user:password@]host:port>
//			proxy_ca <file...>
//			proxy_resolves
//			tls {
//				ca          <file...>
//				client_cert <cert file> <key file>
//				min_version 1.2|1.3
//			}
//			follow_redirects <int>
//		}
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
//			when         <cel expression>
//			transform    <cel expression>
//			content_type <media type>
//			sign [standard] <secret...>
//			sign ed25519 <key...>
//			sign hmac-sha256 <secret...> {
//				header   <name>
//				encoding hex|base64
//				prefix   <prefix>
//			}
//			egress <name>
//			egress { <the egress block above> }
//			breaker <int>|off {
//				cooldown <duration>
//			}
//			rate <int>/s|<int>/m
//			ordered [<cel expression>]
//			verify_endpoint
//			disabled
//		}
//	}
//
// A route name is 1–64 characters of A-Z a-z 0-9 _ - . ; url and at least
// one topic are required. topics and header may repeat and append; header
// names are canonicalised (x-source becomes X-Source). Topic patterns and
// the placeholders of url and header values are checked here, with the
// line. A retry block uses
// either schedule or attempts (optionally with backoff), not both.
// Durations take Caddy's units (5s, 30m, 72h, 3d) and must be positive;
// counts must be positive too. An omitted option keeps the default
// documented on the config type.
//
// when and transform are CEL expressions over `event`; write them in
// backticks so that the quotes inside survive:
// when `event.data.priority == "High"`. They are compiled when the config
// loads (`caddy validate`, `caddy adapt --validate`), not by adapt alone.
// content_type types the body when transform returns a string, and needs
// transform. Each of the three may be given once.
//
// sign adds a signature to every request: Standard Webhooks HMAC-SHA256
// (`v1,`) with no scheme or `standard`, Standard Webhooks Ed25519 (`v1a,`)
// with ed25519, or a plain HMAC of the body in one header with
// hmac-sha256, whose optional block sets the header, the encoding (hex or
// base64) and a prefix such as sha256=. Each secret signs, so that
// receivers can rotate; sign lines may repeat to add secrets, but a route
// has one scheme. Because the first argument selects the scheme, a
// standard secret cannot be literally "standard", "ed25519" or
// "hmac-sha256", and a first argument that looks like another algorithm
// (hmac-sha512, ed448, rsa-sha256, sha256…) is refused as an unknown
// scheme rather than taken for a secret; secrets are normally
// placeholders ({env.SECRET}, {file./path}) or whsec_/whsk_ strings
// anyway. No error message ever quotes a secret.
//
// breaker sets how many consecutive failures open the route's circuit
// (off turns it off); its optional block sets the first cool-down. rate
// caps attempts per second or minute. ordered sends the route's
// deliveries one at a time in ingest order, per key when a CEL key
// expression is given. verify_endpoint checks that the endpoint echoes a
// challenge before the first delivery; disabled queues without sending.
// Each may be given once.
//
// egress defines a named egress policy (the one named default applies to
// routes that name none); a route names one with `egress <name>` or gives
// its own with `egress { ... }` (an empty block means the built-in
// defaults). bind takes at most one IPv4 and one IPv6 address; allow and
// deny take CIDRs with their host bits zero, or single addresses;
// allow_only takes those and host names (partner.example) and wildcards
// (*.partner.example, subdomains only), and permits nothing else; bind,
// allow, deny, allow_only, proxy_ca and tls's ca may repeat and append.
// proxy_ca (the CAs of an https:// proxy) needs an https:// proxy. follow_redirects counts
// from 0 (off, the default) to 20. insecure_skip_verify is refused. A
// policy a route names must be defined by the time the config loads (in
// any webhooks block); a bind address must exist on the host then too.
//
// The handler directive, ordered before reverse_proxy so that no `order`
// line is needed:
//
//	webhook_ingest [<matcher>] {
//		max_body  <size>
//		max_batch <int>
//		auth bearer <token...>
//		auth header <name> <value...>
//		topic  <template>
//		source <name>
//		verify standard <secret...> {
//			tolerance <duration>
//		}
//		verify hmac-sha256 <secret...> {
//			header   <name>
//			prefix   <prefix>
//			encoding hex|base64
//		}
//		verify stripe|slack <secret...> {
//			tolerance <duration>
//		}
//		keep_headers <name...>
//		id_header <name>
//		id_field <key[.key...]>
//	}
//
// Sizes take units (1MiB, 512KB, 1048576). auth bearer may repeat; each
// bearer token is accepted, and so is a request whose auth header (one
// per endpoint) has any of the values. topic makes the endpoint inbound,
// for third-party webhooks: the raw body becomes the event's data and
// the template, e.g. github.{http.request.header.X-GitHub-Event}, its
// type. verify (once) checks the signature of such requests with any of
// the secrets; its block is optional. keep_headers (inbound only) keeps
// just the named request headers with the event instead of every header
// but credentials. id_header (inbound only) names the header holding the
// sender's message id, which makes the event id and so dedupes the
// sender's retries; id_field (inbound only) names where in a JSON body
// the id is, for senders that send it there (default id with verify
// stripe, event_id with verify slack), used when id_header gives none.
// topic, source, keep_headers, id_header and id_field may be given once.
//
// The console directive, also ordered before reverse_proxy (and so after
// basic_auth and forward_auth):
//
//	webhook_console [<path>] {
//		trace_url <url with {trace_id}>
//		user      <placeholder>
//	}
//
// The path (default: the whole site) is where the console lives; the
// directive matches it and everything under it. trace_url links trace
// ids to a trace UI; user names who makes a request (default
// {http.auth.user.id}). Each may be given once.
package caddyfile
