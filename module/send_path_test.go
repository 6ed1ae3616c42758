package module

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// doOnce stands in for retryablehttp's Client.Do on the clients newClient
// makes: that holds only while they make one try and pass errors through.
func TestNewClientIsSingleTry(t *testing.T) {
	hc := &http.Client{}
	c := newClient(hc)
	if c.HTTPClient != hc || c.RetryMax != 0 || c.Logger != nil || c.RequestLogHook != nil ||
		c.ResponseLogHook != nil || c.PrepareRetry != nil {
		t.Fatalf("newClient: %+v; doOnce assumes one try, no logger and no hooks", c)
	}
	resp503 := &http.Response{StatusCode: 503}
	errX := errors.New("x")
	for _, tc := range []struct {
		resp *http.Response
		err  error
	}{{nil, errX}, {resp503, nil}} {
		if retry, err := c.CheckRetry(context.Background(), tc.resp, tc.err); retry || err != nil {
			t.Errorf("CheckRetry(%v, %v) = %v, %v; want no retry", tc.resp, tc.err, retry, err)
		}
		resp, err := c.ErrorHandler(tc.resp, tc.err, 1)
		if resp != tc.resp || err != tc.err {
			t.Errorf("ErrorHandler(%v, %v) = %v, %v; want them passed through", tc.resp, tc.err, resp, err)
		}
	}
}

// newPost makes the request retryablehttp made for an attempt.
func TestNewPostMatchesRetryablehttp(t *testing.T) {
	read := func(rc io.ReadCloser, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ctx := context.WithValue(context.Background(), struct{}{}, 1)
	for _, target := range []string{"https://erp.example.com/api?x=1", "http://h:/x", "http://user:pw@h:8080/a%2Fb"} {
		for _, body := range [][]byte{[]byte(`{"id":"evt_1"}`), {}, nil} {
			got, err := newPost(ctx, target, body)
			if err != nil {
				t.Fatal(err)
			}
			rq, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, target, body)
			if err != nil {
				t.Fatal(err)
			}
			want := rq.Request
			if got.Method != want.Method || got.URL.String() != want.URL.String() || got.Host != want.Host ||
				got.Proto != want.Proto || got.ContentLength != want.ContentLength || len(got.Header) != 0 ||
				got.Context() != want.Context() {
				t.Errorf("%s %q: request %+v, retryablehttp's %+v", target, body, got, want)
			}
			// retryablehttp's Do sets Body from the same reader function
			// as GetBody.
			if b := read(got.Body, nil); b != string(body) {
				t.Errorf("%s: body %q, want %q", target, b, body)
			}
			for range 2 {
				if b, w := read(got.GetBody()), read(want.GetBody()); b != w {
					t.Errorf("%s: GetBody %q, retryablehttp's %q", target, b, w)
				}
			}
		}
	}
	if _, err := newPost(ctx, "http://h/\x7f", nil); err == nil {
		t.Error("a URL with a control character made a request")
	}
}

// A URL without placeholders is worked out once, to what every attempt
// would have made of it.
func TestStaticURL(t *testing.T) {
	for _, u := range []string{
		"https://erp.example.com/api?x=1", "http://127.0.0.1:8080/hook", "http://h:/x",
		"https://h/a%2Fb?q=%zz", "https://h/caf\u00e9 x", "HTTPS://H.example/P#frag",
	} {
		r := testRoute(t, &Route{URL: u})
		eu, err := r.endpointURL(nil)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if r.staticURL == "" || r.staticURL != eu.String() {
			t.Errorf("%s: staticURL %q, want %q", u, r.staticURL, eu.String())
		}
	}
	if r := testRoute(t, &Route{URL: "https://h/{event.type}"}); r.staticURL != "" {
		t.Errorf("a URL with a placeholder got staticURL %q", r.staticURL)
	}
}

// An answer without a body is kept as an empty body, not nil, as before;
// one with a body is kept.
func TestAttemptKeepsEmptyAndShortResponses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/text" {
			io.WriteString(w, "thanks")
		}
	}))
	defer srv.Close()
	s := newSender()
	now := time.Now()
	for path, want := range map[string]string{"/empty": "", "/text": "thanks"} {
		res := s.attempt(context.Background(), testRoute(t, &Route{URL: srv.URL + path}), testJob(now), now)
		if !res.ok() || res.body == nil || string(res.body) != want {
			t.Errorf("%s: result %+v, want body %q (not nil)", path, res, want)
		}
	}
}

// AppendQuoted quotes as strconv.AppendQuote does.
func TestAppendQuoted(t *testing.T) {
	for _, s := range []string{"", "evt_01jdq7y7m2x9", "task.finished/v1:x-y", "a b~", `q"uote`, `back\slash`,
		"tab\there", "nl\n", "caf\u00e9", "\x7f", "\xff\xfe", "emoji \U0001F600", "\u2028"} {
		if got, want := string(AppendQuoted([]byte("x"), s)), string(strconv.AppendQuote([]byte("x"), s)); got != want {
			t.Errorf("AppendQuoted(%q) = %s, want %s", s, got, want)
		}
	}
}
