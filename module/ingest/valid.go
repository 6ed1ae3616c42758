package ingest

import "encoding/binary"

// validJSON reports what encoding/json.Valid reports, faster. Every body
// is validated once before the fast decoder walks it, and json.Valid's
// byte-at-a-time state machine was a tenth of the gateway's CPU with
// batches of 1 KB events; this one skips the inside of strings in a
// tight loop. Like json.Valid it accepts any byte from 0x20 up inside a
// string (it does not check UTF-8) and refuses nesting deeper than
// 10,000. FuzzValidJSONMatchesEncodingJSON holds it to json.Valid.
func validJSON(b []byte) bool {
	i, ok := validValue(b, skipSpace(b, 0))
	return ok && skipSpace(b, i) == len(b)
}

// maxDepth is encoding/json's maxNestingDepth.
const maxDepth = 10000

// validValue checks the value starting at b[i] (no white space before it)
// and returns the index after it. Objects and arrays are walked with an
// explicit stack of open containers, so depth costs no Go stack.
func validValue(b []byte, i int) (int, bool) {
	var stack []byte // '{' or '[' per open container
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return i, false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxDepth {
				return i, false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				var ok bool
				if i, ok = validKey(b, i); !ok {
					return i, false
				}
			}
			continue
		case c == '"':
			var ok bool
			if i, ok = validString(b, i); !ok {
				return i, false
			}
		case c == '-' || c >= '0' && c <= '9':
			var ok bool
			if i, ok = validNumber(b, i); !ok {
				return i, false
			}
		case c == 't':
			if !hasWord(b, i, "true") {
				return i, false
			}
			i += 4
		case c == 'f':
			if !hasWord(b, i, "false") {
				return i, false
			}
			i += 5
		case c == 'n':
			if !hasWord(b, i, "null") {
				return i, false
			}
			i += 4
		default:
			return i, false
		}
		// After a value: close containers or move to the next element.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			open := stack[len(stack)-1]
			if b[i] == open+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipSpace(b, i+1)
			if open == '{' {
				var ok bool
				if i, ok = validKey(b, i); !ok {
					return i, false
				}
			}
			break
		}
	}
}

// validKey checks `"key" :` at b[i] and returns the index of the value
// after it (white space skipped).
func validKey(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	i, ok := validString(b, i)
	if !ok {
		return i, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	return skipSpace(b, i+1), true
}

// validString checks the string starting at b[i] ('"') and returns the
// index after its closing quote.
func validString(b []byte, i int) (int, bool) {
	i++
	for i < len(b) {
		// Eight bytes at a time while none is a quote, a backslash or a
		// control character: most of a payload is plain text.
		for i+8 <= len(b) && !specialInWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		default:
			i++
		}
	}
	return i, false
}

// specialInWord reports whether one of the eight bytes of x is '"', '\\'
// or below 0x20 (the bytes a string scan must stop at). The tests are the
// classic ones of "Bit Twiddling Hacks": a zero byte in x^pattern, a byte
// below n; each answers exactly whether some byte matches (a borrow can
// only flag a byte above one that truly matched).
func specialInWord(x uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	return ((q-ones)&^q|(bs-ones)&^bs|(x-ones*0x20)&^x)&highs != 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func validNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func hasWord(b []byte, i int, w string) bool {
	return len(b)-i >= len(w) && string(b[i:i+len(w)]) == w
}
