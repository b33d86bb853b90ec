package bearer

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// authValue is the Authorization header value for tok.
type authValue struct {
	tok   *Token
	value string
}

// value returns the Authorization header value for tok, building it only
// when tok is not the token of the previous call.
func (t *Transport) value(tok *Token) string {
	if a := t.auth.Load(); a != nil && (a.tok == tok ||
		a.tok.AccessToken == tok.AccessToken && a.tok.TokenType == tok.TokenType) {
		return a.value
	}
	a := &authValue{tok: tok, value: tok.scheme() + " " + tok.AccessToken}
	t.auth.Store(a)
	return a.value
}

// outRequest is the request Transport sends in place of the caller's, with
// the URL it points to, so that both take one allocation.
type outRequest struct {
	req http.Request
	url url.URL
}

// outgoing returns the request to send for req: a copy with body, a URL of
// its own and a header of its own, in which Authorization is set to auth,
// or removed when auth is empty. Nothing a Base does to it reaches req or
// another request. The Trailer map stays req's: a caller may set its values
// while the body is being sent.
func outgoing(req *http.Request, body io.ReadCloser, auth string) *http.Request {
	o := new(outRequest)
	o.req = *req
	o.req.Body = body
	o.url = *req.URL
	o.req.URL = &o.url
	o.req.Header = cloneHeader(req.Header, auth)
	return &o.req
}

// cloneHeader returns a copy of h, as [http.Header.Clone] makes it, without
// Authorization in any spelling and with Authorization set to auth unless
// auth is empty.
func cloneHeader(h http.Header, auth string) http.Header {
	// One array holds every value; sized for one value a key, as most
	// headers have, it grows if need be. Each slice is capped at its own
	// values, so that appending to one copies it instead of overwriting
	// the next.
	vals := make([]string, 0, len(h)+1)
	c := make(http.Header, len(h)+1)
	for k, v := range h {
		switch {
		case isAuthorization(k):
		case v == nil:
			c[k] = nil // kept nil, as Clone does: ReverseProxy tells nil from empty
		default:
			i := len(vals)
			vals = append(vals, v...)
			c[k] = vals[i:len(vals):len(vals)]
		}
	}
	if auth != "" {
		vals = append(vals, auth)
		c["Authorization"] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return c
}

// answers reports whether r, the Request of a response to out, stands for
// out: out itself or a shallow copy of it, which shares out's URL (as the
// one [http.Transport] answers a request with a body with), or a request
// carrying out's token auth, such as the clone that wrappers like otelhttp's
// Transport send in its place. A Base's own request without the token is
// left.
func answers(r, out *http.Request, auth string) bool {
	if r.URL == out.URL {
		return true
	}
	if auth == "" {
		return false
	}
	for k, v := range r.Header {
		if isAuthorization(k) && slices.Contains(v, auth) {
			return true
		}
	}
	return false
}

// hasAuthorization reports whether h has an Authorization header, in any
// spelling of the key.
func hasAuthorization(h http.Header) bool {
	if _, ok := h["Authorization"]; ok {
		return true
	}
	for k := range h {
		if isAuthorization(k) {
			return true
		}
	}
	return false
}

func isAuthorization(k string) bool {
	return len(k) == len("Authorization") && strings.EqualFold(k, "Authorization")
}
