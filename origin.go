package bearer

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxHops bounds the walk to the first request of a redirect chain; a
// longer (or circular) chain gets no token. http.Client stops at 10.
const maxHops = 100

// mayAuthorize reports whether req may carry the token: it goes to the
// origin of the first request of its redirect chain, or to an allowed host.
func (t *Transport) mayAuthorize(req *http.Request) bool {
	if req.Response == nil {
		return true // the first request, the common case
	}
	first := req
	for i := 0; first.Response != nil; i++ {
		if first.Response.Request == nil || i == maxHops {
			// The chain is broken: the origin is unknown, so only an
			// explicitly allowed host may have the token.
			return t.allowedHost(req.URL)
		}
		first = first.Response.Request
	}
	return sameOrigin(first.URL, req.URL) || t.allowedHost(req.URL)
}

// allowedHost reports whether u's host is in AllowedHosts.
func (t *Transport) allowedHost(u *url.URL) bool {
	host, port := u.Hostname(), originPort(u)
	for _, a := range t.AllowedHosts {
		ah, ap := a, ""
		if h, p, ok := splitAllowedHost(a); ok {
			ah, ap = h, p
		}
		if strings.EqualFold(ah, host) && (ap == "" || ap == port) {
			return true
		}
	}
	return false
}

// splitAllowedHost splits "host:port" and "[v6]:port"; ok is false when s has
// no port.
func splitAllowedHost(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.IndexByte(s[i:], ']') >= 0 {
		return "", "", false // "host", "[::1]"
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.IndexByte(host, ':') >= 0 {
		return "", "", false // a bare IPv6 address
	}
	return host, port, true
}

// checkSecure returns an error wrapping ErrInsecure if a token must not go
// to u.
func (t *Transport) checkSecure(u *url.URL) error {
	if u.Scheme == "https" || t.AllowInsecureHTTP || isLoopback(u.Hostname()) {
		return nil
	}
	// The host is not a secret; the rest of the URL may hold some.
	return fmt.Errorf("%w: host %q is not loopback (set Transport.AllowInsecureHTTP to allow it)", ErrInsecure, u.Hostname())
}

// sameOrigin reports whether a and b have the same scheme, host and port,
// the rule curl adopted for CVE-2022-27776. net/http's client also forwards
// Authorization to other ports and to subdomains.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		originPort(a) == originPort(b)
}

// originPort returns u's port, or the default port of its scheme.
func originPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
