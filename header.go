package bearer

import (
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
)

// authValue is the Authorization header value for tok.
type authValue struct {
	tok   *Token
	value string
}

// answers reports whether r, the Request of a response to out, stands for
// out: out itself, a copy sharing its header map, or a request carrying
// av's token, such as the clone that wrappers like otelhttp's Transport
// send in its place. A Base's own request without the token is left.
func answers(r, out *http.Request, av *authValue) bool {
	if r == out || sameMap(r.Header, out.Header) {
		return true
	}
	if av == nil {
		return false
	}
	for k, v := range r.Header {
		if isAuthorization(k) && slices.Contains(v, av.value) {
			return true
		}
	}
	return false
}

// sameMap reports whether a and b are the same map. http.Transport answers
// a request with a body with a copy of it, which shares its header.
func sameMap(a, b http.Header) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// readOnly reports whether base is known not to modify requests.
func (t *Transport) readOnly(base http.RoundTripper) bool {
	if t.BaseReadOnly {
		return true
	}
	_, ok := base.(*http.Transport)
	return ok && runtime.GOOS != "js"
}

// sharedHeader returns a read-only header map with h's headers and
// Authorization set to av's value, or nil when the request had better
// build its own.
func (t *Transport) sharedHeader(h http.Header, av *authValue) http.Header {
	slot := &t.shared[len(h)%len(t.shared)]
	s := slot.Load()
	if s != nil && s.auth == av && s.matches(h) {
		if !s.used.Load() {
			s.used.Store(true)
		}
		return s.header
	}
	if s == nil || s.auth != av || rebuild(s.used.Load()) {
		if shareable(h) {
			s = newSharedHeader(h, av)
			slot.Store(s)
			return s.header
		}
	}
	return nil
}

// maxShared bounds the size of a header Transport keeps for sharing. The
// shared map outlives the request that built it, and a large header (a
// user's cookies, say) should not stay in memory for good.
const maxShared = 8 << 10

// shareable reports whether a shared map may be built from h: it has no
// Authorization of its own and its keys and values total at most
// maxShared bytes.
func shareable(h http.Header) bool {
	n := 0
	for k, v := range h {
		if isAuthorization(k) {
			return false
		}
		n += len(k)
		for _, s := range v {
			n += len(s)
		}
		if n > maxShared {
			return false
		}
	}
	return true
}

// rebuild reports, at random, whether a request whose header differs from
// the shared one should replace it. Rarely if the shared one has never
// fitted a second request: headers that always differ (a request ID each)
// then cost next to nothing, and no counter is shared between CPUs.
func rebuild(used bool) bool {
	if used {
		return rand.Uint32()%32 == 0
	}
	return rand.Uint32()%1024 == 0
}

// sharedHeader is a header map that requests with the same header share.
// Nothing in it but used changes after newSharedHeader returns.
type sharedHeader struct {
	used   atomic.Bool // a request other than the first has matched it
	auth   *authValue
	keys   []string    // the caller's header keys,
	vals   [][]string  // with copies of their values,
	header http.Header // and the map to send: keys, vals and Authorization
}

// newSharedHeader returns the shared header for requests with header h,
// which has no Authorization, and Authorization av. The values are
// copied, so that a caller changing h's slices later changes nothing here.
func newSharedHeader(h http.Header, av *authValue) *sharedHeader {
	n := 1
	for _, v := range h {
		n += len(v)
	}
	all := make([]string, 0, n)
	s := &sharedHeader{
		auth:   av,
		keys:   make([]string, 0, len(h)),
		vals:   make([][]string, 0, len(h)),
		header: make(http.Header, len(h)+1),
	}
	for k, v := range h {
		var c []string
		if v != nil {
			all = append(all, v...)
			// A full slice expression, so that appending to it copies.
			c = all[len(all)-len(v) : len(all) : len(all)]
		}
		s.keys = append(s.keys, k)
		s.vals = append(s.vals, c)
		s.header[k] = c
	}
	all = append(all, av.value)
	s.header["Authorization"] = all[len(all)-1:]
	return s
}

// matches reports whether h has exactly s's keys and values. Equal counts
// and every key of s present in h mean the same set of keys.
func (s *sharedHeader) matches(h http.Header) bool {
	if len(h) != len(s.keys) {
		return false
	}
	for i, k := range s.keys {
		v, ok := h[k]
		if !ok || !slices.Equal(v, s.vals[i]) {
			return false
		}
	}
	return true
}

// value returns the Authorization header value for tok, building it only
// when tok is not the token of the previous call.
func (t *Transport) value(tok *Token) *authValue {
	if a := t.auth.Load(); a != nil && (a.tok == tok ||
		a.tok.AccessToken == tok.AccessToken && a.tok.TokenType == tok.TokenType) {
		return a
	}
	a := &authValue{tok: tok, value: tok.Type() + " " + tok.AccessToken}
	t.auth.Store(a)
	return a
}

// authRequest holds a request copy and its Authorization value slice, so
// that both take one allocation.
type authRequest struct {
	req  http.Request
	auth [1]string
}

// withHeader returns a shallow copy of req with body and a header map of
// its own, in which Authorization is set to value, or removed when value
// is empty.
func withHeader(req *http.Request, body io.ReadCloser, value string) *http.Request {
	a := new(authRequest)
	a.req = *req
	a.req.Body = body
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		if !isAuthorization(k) {
			h[k] = v
		}
	}
	if value != "" {
		a.auth[0] = value
		h["Authorization"] = a.auth[:]
	}
	a.req.Header = h
	return &a.req
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
