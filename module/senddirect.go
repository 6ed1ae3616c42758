package module

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"strings"
)

// sendDirect sends req with rt and returns what an http.Client with that
// transport, no cookie jar, no timeout and a CheckRedirect that always
// answers http.ErrUseLastResponse returns for it: the same response, or
// the same *url.Error. Such a client copies the request's headers for
// every request, in case it follows a redirect, which a route whose
// egress policy does not follow redirects never does; that copy and the
// client's bookkeeping cost a few percent of an attempt.
//
// What the client does, and so this too: credentials in the URL become
// a basic Authorization header (when the request has none), on a copy of
// the request; errors are wrapped in *url.Error with the password
// masked, and a TLS record that looks like HTTP becomes
// http.ErrSchemeMismatch; for a 3xx that the client would follow, the
// Location is parsed (a malformed one is an error, not the response) and
// a 307/308's body is got again before CheckRedirect is asked, whose
// answer keeps the response. TestSendDirectMatchesClient holds it to
// http.Client's behaviour.
func sendDirect(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	uerr := func(resp *http.Response, err error) error {
		u := req.URL
		if resp != nil && resp.Request != nil {
			u = resp.Request.URL
		}
		return &url.Error{Op: urlErrorOp(req.Method), URL: stripPassword(u), Err: err}
	}
	sreq := req
	if u := req.URL.User; u != nil && req.Header.Get("Authorization") == "" {
		username := u.Username()
		password, _ := u.Password()
		sreq = new(http.Request)
		*sreq = *req
		sreq.Header = req.Header.Clone()
		if sreq.Header == nil {
			sreq.Header = make(http.Header)
		}
		sreq.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(username+":"+password)))
	}
	resp, err := rt.RoundTrip(sreq)
	if err != nil {
		if resp != nil {
			log.Printf("RoundTripper returned a response & error; ignoring response")
		}
		if tlsErr, ok := err.(tls.RecordHeaderError); ok && string(tlsErr.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch
		}
		return nil, uerr(nil, err)
	}
	if resp == nil {
		return nil, uerr(nil, fmt.Errorf("http: RoundTripper implementation (%T) returned a nil *Response with a nil error", rt))
	}
	if resp.Body == nil {
		if resp.ContentLength > 0 && req.Method != http.MethodHead {
			return nil, uerr(nil, fmt.Errorf("http: RoundTripper implementation (%T) returned a *Response with content length %d but a nil Body", rt, resp.ContentLength))
		}
		resp.Body = io.NopCloser(strings.NewReader(""))
	}

	includeBody := false
	switch resp.StatusCode {
	case 301, 302, 303:
	case 307, 308:
		includeBody = true
		if req.GetBody == nil && outgoingLength(req) != 0 {
			// The client cannot send the body again: not a redirect.
			return resp, nil
		}
	default:
		return resp, nil
	}
	// A redirect the client would look at before asking CheckRedirect.
	if req.Body != nil {
		req.Body.Close()
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return resp, nil
	}
	if _, err := req.URL.Parse(loc); err != nil {
		resp.Body.Close()
		return nil, uerr(resp, fmt.Errorf("failed to parse Location header %q: %v", loc, err))
	}
	if includeBody && req.GetBody != nil {
		if _, err := req.GetBody(); err != nil {
			resp.Body.Close()
			return nil, uerr(resp, err)
		}
	}
	return resp, nil
}

// outgoingLength is http.Request's unexported outgoingLength.
func outgoingLength(r *http.Request) int64 {
	if r.Body == nil || r.Body == http.NoBody {
		return 0
	}
	if r.ContentLength != 0 {
		return r.ContentLength
	}
	return -1
}

// urlErrorOp is net/http's: "Post" for POST.
func urlErrorOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

// stripPassword is net/http's: the URL with its password masked.
func stripPassword(u *url.URL) string {
	_, passSet := u.User.Password()
	if passSet {
		return strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1)
	}
	return u.String()
}
