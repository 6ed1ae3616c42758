// Package apispec holds an OpenAPI 3.1 description to answers: just
// enough of JSON Schema for hookgate's own description (objects with
// properties, required and additionalProperties, arrays, oneOf, enum,
// $ref into components, the basic types and date-time), so that tests
// of the admin and ingest APIs fail when a handler and the description
// drift apart. It is for tests; nothing in the gateway uses it.
package apispec

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

type Spec struct {
	OpenAPI string                               `json:"openapi"`
	Paths   map[string]map[string]map[string]any `json:"paths"`
	Comps   struct {
		Schemas map[string]map[string]any `json:"schemas"`
	} `json:"components"`
}

// Parse reads an OpenAPI 3.1 description (JSON).
func Parse(raw []byte) (*Spec, error) {
	var sp Spec
	if err := json.Unmarshal(raw, &sp); err != nil {
		return nil, err
	}
	if sp.OpenAPI != "3.1.0" {
		return nil, fmt.Errorf("openapi %q, want 3.1.0", sp.OpenAPI)
	}
	return &sp, nil
}

func (sp *Spec) resolve(s map[string]any) map[string]any {
	for i := 0; i < 10; i++ {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		s = sp.Comps.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if s == nil {
			return map[string]any{"not": "resolvable " + ref}
		}
	}
	return s
}

// Check returns how v (decoded JSON: maps, slices, float64, …) departs
// from schema s: fields the schema lacks (unless additionalProperties
// allows them), required fields missing, wrong types, values outside an
// enum, malformed date-times. at prefixes each finding.
func (sp *Spec) Check(at string, v any, s map[string]any) []string {
	s = sp.resolve(s)
	if _, bad := s["not"]; bad {
		return []string{at + ": " + fmt.Sprint(s["not"])}
	}
	if alts, ok := s["oneOf"].([]any); ok {
		var all []string
		for _, a := range alts {
			errs := sp.Check(at, v, a.(map[string]any))
			if len(errs) == 0 {
				return nil
			}
			all = append(all, errs...)
		}
		return append([]string{at + ": matches no alternative of oneOf"}, all...)
	}
	var errs []string
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	switch s["type"] {
	case nil:
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want an object", at, v))
		}
		props, _ := s["properties"].(map[string]any)
		for k, x := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, sp.Check(at+"."+k, x, ps)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					errs = append(errs, fmt.Sprintf("%s: field %q is not in the schema", at, k))
				}
			case map[string]any:
				errs = append(errs, sp.Check(at+"."+k, x, ap)...)
			case nil:
				if props != nil {
					errs = append(errs, fmt.Sprintf("%s: field %q is not in the schema", at, k))
				}
			}
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required field %q missing", at, r))
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want an array", at, v))
		}
		items, _ := s["items"].(map[string]any)
		for i, x := range a {
			errs = append(errs, sp.Check(at+"["+strconv.Itoa(i)+"]", x, items)...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want a string", at, v))
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not a date-time", at, str))
			}
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			errs = append(errs, fmt.Sprintf("%s: %v, want an integer", at, v))
		}
	case "number":
		if _, ok := v.(float64); !ok {
			errs = append(errs, fmt.Sprintf("%s: %v, want a number", at, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: %v, want a boolean", at, v))
		}
	default:
		errs = append(errs, fmt.Sprintf("%s: schema type %v is not understood by this test", at, s["type"]))
	}
	return errs
}

// Ops lists the described operations, sorted: "GET /webhooks/stats".
func (sp *Spec) Ops() []string {
	var ops []string
	for p, methods := range sp.Paths {
		for m := range methods {
			ops = append(ops, strings.ToUpper(m)+" "+p)
		}
	}
	sort.Strings(ops)
	return ops
}

// Response returns the schema the description gives for an answer to
// method path with status code and media type (without parameters), and
// whether it describes one at all.
func (sp *Spec) Response(method, path string, code int, mediaType string) (map[string]any, bool) {
	op, ok := sp.Paths[path][strings.ToLower(method)]
	if !ok {
		return nil, false
	}
	responses, _ := op["responses"].(map[string]any)
	r, ok := responses[strconv.Itoa(code)].(map[string]any)
	if !ok {
		return nil, false
	}
	content, _ := r["content"].(map[string]any)
	media, ok := content[mediaType].(map[string]any)
	if !ok {
		return nil, false
	}
	schema, _ := media["schema"].(map[string]any)
	return schema, true
}
