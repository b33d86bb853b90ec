package bearer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultTokenURL is OpenTicket's token endpoint, used when
// [Config.TokenURL] is empty.
const DefaultTokenURL = "https://auth.openticket.tech/tokens"

// AuthStyle says how the client authenticates to the token endpoint.
type AuthStyle int

const (
	// AuthInBody sends client_id and client_secret as body fields, as
	// OpenTicket wants. It is the zero value.
	AuthInBody AuthStyle = iota
	// AuthBasic sends them as HTTP Basic authentication (RFC 6749
	// section 2.3.1) and leaves them out of the body.
	AuthBasic
)

// defaultHTTPClient has a timeout, unlike http.DefaultClient: a token
// endpoint that never answers must not hang a refresh.
var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

func (c *Config) refreshGrant(ctx context.Context, refreshToken string) (*Token, error) {
	return c.retrieve(ctx, map[string]string{
		"grant_type":    "refresh_token",
		"refresh_token": refreshToken,
	}, []string{refreshToken})
}

func (c *Config) clientCredentialsGrant(ctx context.Context) (*Token, error) {
	params := map[string]string{"grant_type": "client_credentials"}
	if len(c.Scopes) > 0 {
		params["scope"] = strings.Join(c.Scopes, " ")
	}
	return c.retrieve(ctx, params, nil)
}

func (c *Config) tokenURL() string {
	if c.TokenURL == "" {
		return DefaultTokenURL
	}
	return c.TokenURL
}

// checkURL rejects an endpoint URL (the value of Config's field) that is
// not absolute, or that is plain http to a host that is not loopback
// without AllowInsecureHTTP: credentials or a user's consent would cross
// the network in clear text.
func (c *Config) checkURL(field, raw string) error {
	if raw == "" {
		return fmt.Errorf("bearer: Config.%s is empty", field)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bearer: Config.%s is not an absolute URL", field)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if c.AllowInsecureHTTP || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: Config.%s host %q is not loopback (set Config.AllowInsecureHTTP to allow it)", ErrInsecure, field, u.Hostname())
	}
	return fmt.Errorf("bearer: Config.%s scheme %q is not https", field, u.Scheme)
}

// isLoopback reports whether host (no port) is localhost or a loopback
// address: the hosts a token may reach over plain http.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func (c *Config) maxRetries() int {
	switch {
	case c.MaxRetries < 0:
		return 0
	case c.MaxRetries == 0:
		return 3
	}
	return c.MaxRetries
}

func (c *Config) backoff(attempt int) time.Duration {
	base := c.RetryBackoff
	if base <= 0 {
		base = 250 * time.Millisecond
	}
	d := base << (attempt - 1)
	if d > 10*time.Second || d <= 0 {
		d = 10 * time.Second
	}
	// Full jitter keeps a fleet of replicas from retrying in step.
	return d/2 + rand.N(d/2+1)
}

// retrieve sends a token request, retrying transport errors, 5xx and 429
// a bounded number of times. secrets are the grant's values, kept out of
// every error. Tokens it returns record c's endpoint and client.
//
// A request whose outcome is unknown (sent, no answer) is retried with
// the same grant: on servers with a reuse grace period the retry recovers
// the rotation, and on strict servers the spent token is dead either way.
// Nothing else sends the same grant twice.
func (c *Config) retrieve(ctx context.Context, params map[string]string, secrets []string) (*Token, error) {
	body, contentType, secrets, err := c.prepare("TokenURL", c.tokenURL(), params, secrets)
	if err != nil {
		return nil, err
	}
	return c.retry(ctx, "token request ("+params["grant_type"]+")", c.tokenURL(), func() (*Token, *RetrieveError) {
		tok, rerr := c.send(ctx, body, contentType, secrets)
		if tok != nil {
			tok.issuer = c.record()
		}
		return tok, rerr
	})
}

// prepare checks the URL of the endpoint that Config's field names and
// encodes a request to it with the client's credentials. The secrets it
// returns are the request's values and the client's, in the forms a
// server may echo them.
func (c *Config) prepare(field, endpoint string, params map[string]string, secrets []string) ([]byte, string, []string, error) {
	if err := c.checkURL(field, endpoint); err != nil {
		return nil, "", nil, err
	}
	secrets = append(secrets, c.ClientSecret)
	if c.AuthStyle == AuthBasic {
		// An echoed Authorization header holds the secret in base64.
		secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.ClientID)+":"+url.QueryEscape(c.ClientSecret))))
	}
	body, contentType, err := c.encode(params)
	return body, contentType, secrets, err
}

// retry calls send until it succeeds, fails for good, has failed
// MaxRetries+1 times, or ctx ends, waiting with backoff (or Retry-After)
// between attempts. A token returned with an error (an unusable answer
// that rotated) ends it at once. Each attempt, its outcome and each wait
// go to the Logger as they happen; what names the request and endpoint its
// URL, neither of them secret.
func (c *Config) retry(ctx context.Context, what, endpoint string, send func() (*Token, *RetrieveError)) (*Token, error) {
	l := c.Logger
	if l != nil {
		if u, err := url.Parse(endpoint); err == nil {
			endpoint = u.Redacted()
		}
		l = l.With(slog.String("request", what), slog.String("url", endpoint))
	}
	for attempt := 1; ; attempt++ {
		start := time.Now()
		if l != nil {
			l.LogAttrs(ctx, slog.LevelDebug, "bearer: sending", slog.Int("attempt", attempt))
		}
		tok, rerr := send()
		if l != nil {
			outcome := slog.String("outcome", "ok")
			if rerr != nil {
				outcome = slog.String("outcome", rerr.Error())
			}
			l.LogAttrs(ctx, slog.LevelDebug, "bearer: answered", slog.Int("attempt", attempt), outcome, slog.Duration("took", time.Since(start)))
		}
		if rerr == nil {
			return tok, nil
		}
		if tok != nil {
			// Unusable, but the server rotated: never ask again.
			return tok, rerr
		}
		rerr.Attempts = attempt
		if !rerr.temporary() || attempt > c.maxRetries() || ctx.Err() != nil {
			return nil, rerr
		}
		wait := c.backoff(attempt)
		if rerr.RetryAfter > 0 {
			wait = rerr.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would outlast the refresh: give the answer now.
			return nil, rerr
		}
		if l != nil {
			l.LogAttrs(ctx, slog.LevelDebug, "bearer: waiting before the next attempt", slog.Duration("wait", wait), slog.Bool("retry_after", rerr.RetryAfter > 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, rerr
		}
	}
}

func (c *Config) encode(params map[string]string) ([]byte, string, error) {
	if c.AuthStyle == AuthInBody {
		params["client_id"] = c.ClientID
		if c.ClientSecret != "" {
			params["client_secret"] = c.ClientSecret
		}
	}
	switch c.Encoding {
	case JSON:
		b, err := json.Marshal(params)
		return b, "application/json", err
	case Form:
		v := make(url.Values, len(params))
		for k, s := range params {
			v.Set(k, s)
		}
		return []byte(v.Encode()), "application/x-www-form-urlencoded", nil
	}
	return nil, "", fmt.Errorf("bearer: unknown Config.Encoding %d", int(c.Encoding))
}

// send sends one token request and reads the token from its answer.
func (c *Config) send(ctx context.Context, body []byte, contentType string, secrets []string) (*Token, *RetrieveError) {
	resp, data, rerr := c.post(ctx, c.tokenURL(), body, contentType)
	if rerr != nil {
		return nil, rerr
	}
	now := c.now()
	wire, derr := decodeToken(data, resp.Header.Get("Content-Type"))
	if rerr := failed(resp, data, wire, secrets, now); rerr != nil {
		return nil, rerr
	}
	// A successful answer carries tokens: no excerpt of it, ever.
	if derr == nil {
		tok, err := wire.token(now)
		if err == nil {
			return tok, nil
		}
		rerr := &RetrieveError{StatusCode: resp.StatusCode, Err: fmt.Errorf("unusable answer: %w", err)}
		switch {
		case wire.RefreshToken == "":
			// No new refresh token: the server kept the old one.
			return nil, rerr
		case !vschar(wire.RefreshToken):
			rerr.spent = true
			return nil, rerr
		}
		// The server rotated: the caller keeps the new refresh token,
		// although the rest is unusable.
		tok = &Token{RefreshToken: wire.RefreshToken, Obtained: now}
		if w := wire.RefreshExpiresIn; w.set && w.n > 0 {
			tok.RefreshExpiry = now.Add(time.Duration(w.n) * time.Second)
		}
		return tok, rerr
	}
	switch rt, rexp, present := salvage(data, now); {
	case rt != "":
		// The server rotated, and the new refresh token can be read:
		// the caller keeps it, although the rest is unusable.
		return &Token{RefreshToken: rt, RefreshExpiry: rexp, Obtained: now},
			&RetrieveError{StatusCode: resp.StatusCode, Err: fmt.Errorf("unusable answer: %w", derr)}
	case present:
		// Rotated, and the new refresh token cannot be read.
		return nil, &RetrieveError{StatusCode: resp.StatusCode, Err: fmt.Errorf("unusable answer: %w", derr), spent: true}
	}
	// Cut or mangled on the way (a proxy, a reset): the server may have
	// rotated the token and no new one can be read, so the outcome is
	// unknown, as with a lost answer.
	return nil, &RetrieveError{StatusCode: resp.StatusCode, Err: fmt.Errorf("malformed answer: %w", derr), lost: true}
}

// post sends one request to endpoint and reads its answer, at most maxBody
// bytes; the answer's body is closed. A request that left and got no whole
// answer is lost: its outcome is unknown.
func (c *Config) post(ctx context.Context, endpoint string, body []byte, contentType string) (*http.Response, []byte, *RetrieveError) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, &RetrieveError{Err: errors.New("cannot build the request")}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if c.AuthStyle == AuthBasic {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	}
	// A copy of the user's client (its transport, TLS settings and proxy
	// stay) that follows no redirect: a 307 would send the grant and the
	// client secret to wherever it points.
	hc := *defaultHTTPClient
	if c.HTTPClient != nil {
		hc = *c.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, &RetrieveError{Err: err, lost: true}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, &RetrieveError{StatusCode: resp.StatusCode, Err: fmt.Errorf("reading the answer: %w", err), lost: true}
	}
	if len(data) > maxBody {
		// Not read: no token answer is that large (a proxy's page, say),
		// so whether the server rotated is unknown.
		return nil, nil, &RetrieveError{StatusCode: resp.StatusCode, Err: fmt.Errorf("answer is larger than %d bytes", maxBody)}
	}
	return resp, data, nil
}

// failed returns the error of an answer that is an OAuth error object (wire,
// nil if the body could not be decoded) or has a status other than 2xx, and
// nil for any other answer.
func failed(resp *http.Response, data []byte, wire *wireToken, secrets []string, now time.Time) *RetrieveError {
	if wire != nil && wire.Error != "" {
		return &RetrieveError{
			StatusCode:       resp.StatusCode,
			ErrorCode:        clean(wire.Error, secrets, 64),
			ErrorDescription: clean(wire.ErrorDescription, secrets, 200),
			ErrorURI:         clean(wire.ErrorURI, secrets, 200),
			RetryAfter:       retryAfter(resp.Header.Get("Retry-After"), now),
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &RetrieveError{
			StatusCode: resp.StatusCode,
			Body:       excerpt(data, secrets, 120),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now),
		}
	}
	return nil
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
