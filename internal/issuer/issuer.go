// Package issuer is the record of the token endpoint and client a
// bearer.Token was issued to. Package bearer keeps the record in an
// unexported field of Token and checks it before a refresh; this package
// lets the bearer command and the tests of this repo read and write it
// without making it part of bearer's API.
package issuer

import (
	"errors"
	"net/url"
	"strings"
)

// Record names where a token came from. The zero Record is unknown: tokens
// stored before records were kept have none, and nothing is checked for
// them.
type Record struct {
	TokenURL string
	ClientID string
}

// Known reports whether r names an endpoint.
func (r Record) Known() bool { return r.TokenURL != "" }

// Same reports whether r and o name the same endpoint and client. Scheme
// and host compare without regard to case, the rest exactly.
func (r Record) Same(o Record) bool {
	return r.ClientID == o.ClientID && canonical(r.TokenURL) == canonical(o.TokenURL)
}

func canonical(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.String()
}

// Redacted is the token URL without a password it may hold, for messages.
func (r Record) Redacted() string {
	u, err := url.Parse(r.TokenURL)
	if err != nil {
		return "(an unparsable URL)"
	}
	return u.Redacted()
}

// ErrMismatch is wrapped by the error of a bearer.Source that refuses to
// refresh, or revoke, a token issued to another token endpoint or client.
var ErrMismatch = errors.New("bearer: the token was issued to another token endpoint or client")

// Of returns the record of tok, a *bearer.Token, and Set replaces it.
// Package bearer sets both when it is initialised; they take any because
// this package cannot import bearer, which imports it.
var (
	Of  func(tok any) Record
	Set func(tok any, r Record)
)
