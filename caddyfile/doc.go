// Package caddyfile holds hookgate's Caddyfile syntax.
package caddyfile

import _ "github.com/hookgate/hookgate/module"
