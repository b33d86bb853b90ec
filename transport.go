package bearer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// Transport is an [http.RoundTripper] that authenticates each request with
// "Authorization: <type> <access token>", taking the token from Source.
//
// When the server answers 401 Unauthorized and Source also has a method
// Refresh(ctx context.Context, rejected *Token) (*Token, error), as [Source]
// does, Transport calls it with the token the server rejected and sends the
// request once more with the token it returns. It does so at most once per
// request, and not when the body cannot be replayed (Body set, GetBody nil)
// or when WWW-Authenticate reports error="insufficient_scope", since a new
// token would not help. If Refresh fails, the 401 response is closed and
// RoundTrip returns the error, wrapped, so that callers can branch with
// errors.Is(err, [ErrReauthorize]). If the retry gets 401 too, that response
// is returned.
//
// Transport never modifies the caller's request: it sends a copy with a URL
// and a header of its own (the caller's headers, their values copied as
// [http.Header.Clone] copies them, plus Authorization), so nothing Base does
// to the request it gets, nor a Proxy func or protocol round tripper of an
// [*http.Transport], reaches the caller's request or another request. The
// Authorization value is built once per token; with a valid token, the copy
// is all Transport adds to a request: for one with a few headers, four
// allocations and under 1 KiB, fewer than golang.org/x/oauth2's Transport
// makes (BENCHMARKS.md in the repository has the figures). The Request of a
// response is the caller's request, not the copy that carried the token nor
// a clone of it made by Base, so the token does not show there; a request
// of Base's own without the token is left as it is.
//
// The token goes only to the origin (scheme, host and port) of the first
// request of a redirect chain, as curl does, and to AllowedHosts; on other
// hops any Authorization header, such as the one [http.Client] copies to a
// different port or a subdomain, is removed. To find the first request of a
// chain Transport follows Request.Response.Request, which [http.Client] and
// [http.Transport] set; when Base returns responses without Request, redirected
// hops get no token. A token is never sent over plain http to a host other
// than localhost, 127.0.0.0/8 or ::1 unless AllowInsecureHTTP is set:
// RoundTrip returns an error wrapping [ErrInsecure] instead.
//
// With a transport that retries failed requests, make Transport the outer
// one, with the retrying transport as Base: retries of 5xx answers and
// network errors then reuse the header, and the 401 retry happens once,
// after a refresh. A retrying transport placed outside Transport must not
// retry 401 answers itself, or each of its attempts refreshes again, nor
// retry Transport's errors: an error matching [ErrReauthorize] does not
// go away by asking again.
//
// The zero Transport has no Source and fails every request with
// an error. A Transport is safe for concurrent use by multiple
// goroutines; its fields must not be changed after its first use, and it
// must not be copied after its first use.
type Transport struct {
	// Source supplies the tokens. Its Token method is called once per
	// request; it should be cheap while the token is valid, as [Source]'s
	// is. Tokens it returns must not be modified afterwards: Transport
	// caches the header value of the last token.
	Source TokenSource

	// Base sends the requests. If nil, [http.DefaultTransport] is used.
	Base http.RoundTripper

	// AllowedHosts lists further hosts that redirects may take the token
	// to, besides the origin of the first request. An entry "host" allows
	// every port of host, "host:port" only that port; names compare
	// without regard to case. Nil means none.
	AllowedHosts []string

	// AllowInsecureHTTP allows sending the token over plain http to hosts
	// that are not loopback. The zero value refuses with [ErrInsecure].
	AllowInsecureHTTP bool

	// auth caches the header value of the last token seen, so that the
	// valid-token path builds no string. A Source hands out the same
	// *Token until it rotates; other sources may hand out a new *Token
	// for the same token each time, so tokens also compare by value.
	auth atomic.Pointer[authValue]
}

var _ http.RoundTripper = (*Transport)(nil)

// refresher is the optional method of a TokenSource that Transport uses
// after a 401.
type refresher interface {
	Refresh(ctx context.Context, rejected *Token) (*Token, error)
}

// errEmptyToken is reported, wrapped, when a TokenSource returns a nil
// Token or one without an access token, and no error.
var errEmptyToken = errors.New("the source returned no token")

// maxDiscard bounds how much of a 401 body is read before it is closed, so
// that a small one leaves its connection reusable and a huge one costs
// little. net/http's client reads 2 KiB of a redirect's body.
const maxDiscard = 4 << 10

// RoundTrip implements [http.RoundTripper]. It does not modify req, and it
// closes req.Body on every path, errors included.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil {
		closeRequestBody(req)
		return nil, errNoSource
	}
	if req.URL == nil {
		closeRequestBody(req)
		return nil, errors.New("bearer: nil Request.URL")
	}
	if !t.mayAuthorize(req) {
		if !hasAuthorization(req.Header) {
			return t.base().RoundTrip(req)
		}
		// http.Client copied the caller's header to this hop, or the caller
		// set it; either way it is not ours to send here.
		return t.send(req, req.Body, "")
	}
	if err := t.checkSecure(req.URL); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	ctx := req.Context()
	tok, err := t.token(ctx)
	if err != nil {
		closeRequestBody(req)
		return nil, err
	}
	resp, err := t.send(req, req.Body, t.value(tok))
	if err != nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	return t.retry(ctx, req, resp, tok)
}

// retry handles the 401 answer resp to req, which was sent with tok. The
// first attempt already consumed and closed req.Body.
func (t *Transport) retry(ctx context.Context, req *http.Request, resp *http.Response, tok *Token) (*http.Response, error) {
	rf, ok := t.Source.(refresher)
	if !ok || !canReplay(req) || insufficientScope(resp.Header) {
		return resp, nil
	}
	// Free the connection before waiting for the refresh: with a bounded
	// pool (MaxConnsPerHost) the refresh itself may need it.
	resp.Body = buffered(resp.Body)
	var next *Token
	var err error
	if s, ok := rf.(*Source); ok {
		next, err = s.refreshAfter401(ctx, tok)
	} else {
		next, err = rf.Refresh(ctx, tok)
	}
	if errors.Is(err, errRejectedAgain) {
		// The token replaced a rejected one moments ago: the server's
		// answer stands, and refreshing again would only be a storm.
		return resp, nil
	}
	if err != nil {
		discardResponse(resp)
		return nil, errorf("refreshing after a 401: %w", err)
	}
	if next == nil || next.AccessToken == "" {
		discardResponse(resp)
		return nil, errorf("refreshing after a 401: %w", errEmptyToken)
	}
	if next.AccessToken == tok.AccessToken {
		// The source stands by the token the server refused; sending it
		// again would get the same answer.
		return resp, nil
	}
	body := req.Body
	if body != nil && body != http.NoBody {
		if body, err = req.GetBody(); err != nil {
			discardResponse(resp)
			return nil, errorf("replaying the request body: %w", err)
		}
	}
	discardResponse(resp)
	return t.send(req, body, t.value(next))
}

// send sends a copy of req with body and with Authorization set to auth,
// or without Authorization if auth is empty. A response to the copy, to a
// shallow copy of it, or to a clone of it with the token, is given req as
// its Request, as if Base had sent req itself: the caller never sees the
// token there.
func (t *Transport) send(req *http.Request, body io.ReadCloser, auth string) (*http.Response, error) {
	out := outgoing(req, body, auth)
	resp, err := t.base().RoundTrip(out)
	if resp != nil && resp.Request != nil && answers(resp.Request, out, auth) {
		resp.Request = req
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections of Base, if it has such
// a method, so that [http.Client.CloseIdleConnections] reaches through
// Transport.
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if c, ok := t.base().(closeIdler); ok {
		c.CloseIdleConnections()
	}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// token returns a usable token from the source.
func (t *Transport) token(ctx context.Context) (*Token, error) {
	tok, err := t.Source.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("bearer: getting a token: %w", err)
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, fmt.Errorf("bearer: getting a token: %w", errEmptyToken)
	}
	return tok, nil
}

// canReplay reports whether req's body can be sent a second time.
func canReplay(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// insufficientScope reports whether a WWW-Authenticate header carries
// error="insufficient_scope" (RFC 6750 section 3.1): the token is valid but
// not enough, and a new one would be refused too.
func insufficientScope(h http.Header) bool {
	const param, code = "error", "insufficient_scope"
	for _, v := range h.Values("Www-Authenticate") {
		v = strings.ToLower(v)
		for i := 0; ; {
			j := strings.Index(v[i:], param)
			if j < 0 {
				break
			}
			j += i
			i = j + len(param)
			if j > 0 && !strings.ContainsRune(" \t,", rune(v[j-1])) {
				continue // part of a longer name, such as "x_error"
			}
			rest := strings.TrimLeft(v[i:], " \t")
			if !strings.HasPrefix(rest, "=") {
				continue
			}
			rest = strings.TrimLeft(rest[1:], " \t")
			rest = strings.TrimPrefix(rest, `"`)
			if !strings.HasPrefix(rest, code) {
				continue
			}
			rest = rest[len(code):]
			if rest == "" || strings.ContainsRune(`" ,;`, rune(rest[0])) {
				return true
			}
		}
	}
	return false
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// buffered reads up to maxDiscard bytes of body and closes it, so that its
// connection goes back to the pool; a longer body stays open behind the
// buffered part, readable in full.
func buffered(body io.ReadCloser) io.ReadCloser {
	if body == nil || body == http.NoBody {
		return body
	}
	buf, err := io.ReadAll(io.LimitReader(body, maxDiscard+1))
	if err != nil || len(buf) > maxDiscard {
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), body), body}
	}
	body.Close()
	return io.NopCloser(bytes.NewReader(buf))
}

// discardResponse reads a bounded part of resp's body, so that the connection
// can be reused, and closes it.
func discardResponse(resp *http.Response) {
	if resp.Body == nil {
		return
	}
	if resp.ContentLength == -1 || resp.ContentLength <= maxDiscard {
		io.CopyN(io.Discard, resp.Body, maxDiscard)
	}
	resp.Body.Close()
}
