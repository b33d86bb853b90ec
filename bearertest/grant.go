package bearertest

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// codeLifetime is how long an authorization code from AuthorizeCode lives.
const codeLifetime = 10 * time.Minute

// Grant is a token pair issued by a [Server].
type Grant struct {
	AccessToken   string
	RefreshToken  string    // empty for client_credentials grants
	Expiry        time.Time // when AccessToken expires
	RefreshExpiry time.Time // when RefreshToken expires; zero if there is none
	Family        string    // the authorization the pair descends from; empty for client_credentials

	issued time.Time
}

// JSON returns the token endpoint's JSON response body for g, as it would
// have been sent when g was issued.
func (g Grant) JSON() []byte {
	b, _ := json.Marshal(g.response(g.issued))
	return b
}

// String returns a description of g that does not reveal its tokens, so
// that a Grant can be logged.
func (g Grant) String() string {
	return fmt.Sprintf("Grant{Family: %q, AccessToken: %s, RefreshToken: %s, Expiry: %s, RefreshExpiry: %s}",
		g.Family, redact(g.AccessToken), redact(g.RefreshToken),
		g.Expiry.Format(time.RFC3339), g.RefreshExpiry.Format(time.RFC3339))
}

// GoString is String: %#v must not print the tokens either.
func (g Grant) GoString() string { return g.String() }

// Format makes every fmt verb print String. Like a bearer.Token, a Grant
// nested in a value that encoding/json encodes (as slog's JSON handler does)
// shows its tokens.
func (g Grant) Format(f fmt.State, verb rune) { io.WriteString(f, g.String()) }

// LogValue makes slog print g as String does.
func (g Grant) LogValue() slog.Value { return slog.StringValue(g.String()) }

// redact keeps only a token's prefix, which names its kind.
func redact(tok string) string {
	if tok == "" {
		return `""`
	}
	if i := strings.IndexByte(tok, '_'); i >= 0 {
		return tok[:i+1] + "REDACTED"
	}
	return "REDACTED"
}

// tokenResponse is the JSON form of a successful token response.
type tokenResponse struct {
	TokenType             string            `json:"token_type"`
	ExpiresIn             int64             `json:"expires_in"`
	AccessToken           string            `json:"access_token"`
	RefreshToken          string            `json:"refresh_token,omitempty"`
	RefreshTokenExpiresIn int64             `json:"refresh_token_expires_in,omitempty"`
	Info                  map[string]string `json:"info"`
}

func (g Grant) response(now time.Time) tokenResponse {
	tr := tokenResponse{
		TokenType:   "Bearer",
		ExpiresIn:   seconds(g.Expiry.Sub(now)),
		AccessToken: g.AccessToken,
		Info:        map[string]string{},
	}
	if g.RefreshToken != "" {
		tr.RefreshToken = g.RefreshToken
		tr.RefreshTokenExpiresIn = seconds(g.RefreshExpiry.Sub(now))
	}
	if g.Family != "" {
		tr.Info["family"] = g.Family
	}
	return tr
}

func seconds(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return int64(d / time.Second)
}

// family is the chain of tokens descending from one authorization.
type family struct {
	id      string
	revoked bool
	head    Grant // the latest pair issued
}

type refreshToken struct {
	fam    *family
	expiry time.Time
	spent  time.Time // zero while the token is live
	next   Grant     // the pair issued when the token was spent
}

type accessToken struct {
	fam     *family // nil for client_credentials
	expiry  time.Time
	revoked bool
}

type authCode struct {
	redirectURI string
	challenge   string
	expiry      time.Time
	used        bool
	fam         *family // started by the exchange; revoked if the code is replayed
}

// Issue starts a new family, as if a user had just authorized the app, and
// returns its first pair.
func (s *Server) Issue() Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startFamilyLocked(s.cfg.Now())
}

// AuthorizeCode returns a one-time authorization code, valid for ten
// minutes, for the authorization_code grant. The exchange must present the
// same redirectURI. A non-empty codeChallenge is a PKCE S256 challenge: the
// exchange must then present the code_verifier whose SHA-256, base64url
// encoded without padding, equals it. An empty codeChallenge means no PKCE.
func (s *Server) AuthorizeCode(redirectURI, codeChallenge string) string {
	code := newToken("ac_")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = &authCode{
		redirectURI: redirectURI,
		challenge:   codeChallenge,
		expiry:      s.cfg.Now().Add(codeLifetime),
	}
	return code
}

// RevokeAccess revokes one access token before it expires. The protected
// API rejects it from then on; its family lives on.
func (s *Server) RevokeAccess(accessToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.access[accessToken]; a != nil {
		a.revoked = true
	}
}

// RevokeFamily revokes every access and refresh token of a family, as a
// user withdrawing consent would.
func (s *Server) RevokeFamily(family string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.families[family]; f != nil {
		s.revokeLocked(f)
	}
}

// Alive reports whether refreshToken is the live head of a family that has
// not been revoked: unspent, unexpired and usable for one refresh.
func (s *Server) Alive(refreshToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[refreshToken]
	return rt != nil && rt.spent.IsZero() && !rt.fam.revoked && s.cfg.Now().Before(rt.expiry)
}

// FamilyAlive reports whether family has not been revoked and its head
// refresh token has not expired: whether the app can still refresh without
// the user authorizing it again.
func (s *Server) FamilyAlive(family string) bool {
	_, ok := s.Head(family)
	return ok
}

// Head returns the latest pair issued in family, and whether the family is
// alive (see [Server.FamilyAlive]). A client that kept its tokens safe holds
// exactly this refresh token.
func (s *Server) Head(family string) (Grant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.families[family]
	if f == nil {
		return Grant{}, false
	}
	alive := !f.revoked && s.cfg.Now().Before(f.head.RefreshExpiry)
	return f.head, alive
}

func (s *Server) startFamilyLocked(now time.Time) Grant {
	s.nfam++
	f := &family{id: "f" + strconv.Itoa(s.nfam)}
	s.families[f.id] = f
	return s.issueLocked(f, now)
}

// issueLocked issues a new pair in f, or a lone access token if f is nil.
func (s *Server) issueLocked(f *family, now time.Time) Grant {
	g := Grant{
		AccessToken: newToken("at_"),
		Expiry:      now.Add(s.cfg.AccessLifetime),
		issued:      now,
	}
	s.access[g.AccessToken] = &accessToken{fam: f, expiry: g.Expiry}
	if f == nil {
		return g
	}
	g.Family = f.id
	g.RefreshToken = newToken("rt_")
	g.RefreshExpiry = now.Add(s.cfg.RefreshLifetime)
	s.refresh[g.RefreshToken] = &refreshToken{fam: f, expiry: g.RefreshExpiry}
	f.head = g
	return g
}

func (s *Server) revokeLocked(f *family) {
	if !f.revoked {
		f.revoked = true
		s.stats.Revocations++
	}
}
