package bearer

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
)

// AuthCodeURL returns the URL of the authorization endpoint, [Config.AuthURL],
// to which a person is sent to authorize the client (RFC 6749 section
// 4.1.1). It carries response_type=code, client_id, redirect_uri (unless
// redirectURI is empty), scope (the Scopes, space-separated), state, and
// the PKCE S256 challenge of verifier (RFC 7636). Other parameters a server
// wants (audience, prompt, access_type=offline) go into AuthURL's own
// query, which is kept.
//
// state and verifier are secrets of this one authorization, such as
// [GenerateVerifier] returns: the redirect must bring back the same state,
// checked before its code is used, and [Config.Exchange] then needs the
// same redirectURI and verifier. AuthCodeURL builds nothing and reports an
// error when AuthURL is empty (there is no default: OpenTicket does not
// document its authorization endpoint), is not https (plain http only to a
// loopback host, or with AllowInsecureHTTP), or when state is empty or
// verifier is not a valid PKCE verifier.
func (c *Config) AuthCodeURL(state, redirectURI, verifier string) (string, error) {
	if err := c.checkURL("AuthURL", c.AuthURL); err != nil {
		return "", err
	}
	if state == "" {
		return "", errors.New("bearer: AuthCodeURL: empty state: it protects the redirect from forgery")
	}
	if err := checkVerifier(verifier); err != nil {
		return "", err
	}
	if redirectURI != "" {
		if u, err := url.Parse(redirectURI); err != nil || !u.IsAbs() {
			return "", errors.New("bearer: AuthCodeURL: the redirect URI is not an absolute URL")
		}
	}
	u, _ := url.Parse(c.AuthURL) // checked above
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", c.ClientID)
	if redirectURI != "" {
		q.Set("redirect_uri", redirectURI)
	}
	if len(c.Scopes) > 0 {
		q.Set("scope", strings.Join(c.Scopes, " "))
	}
	q.Set("state", state)
	q.Set("code_challenge", s256Challenge(verifier))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// checkVerifier checks a PKCE code verifier: 43 to 128 characters of
// A-Z, a-z, 0-9 and "-._~" (RFC 7636 section 4.1). It never quotes it.
func checkVerifier(v string) error {
	if v == "" {
		return errors.New("bearer: empty PKCE verifier (GenerateVerifier makes one)")
	}
	if len(v) < 43 || len(v) > 128 {
		return errors.New("bearer: the PKCE verifier must be 43 to 128 characters long")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return errors.New("bearer: the PKCE verifier holds a character RFC 7636 does not allow")
		}
	}
	return nil
}

// Exchange obtains the first token with the authorization_code grant
// (RFC 6749 section 4.1.3): code is what the redirect brought back, after
// its state was checked; redirectURI and codeVerifier are the ones given
// to [Config.AuthCodeURL] ("" for a code obtained without them). It checks
// before sending anything that the code is not empty and the verifier is
// well formed, then uses the same request code, retries and checks as a
// refresh. Save the result in the Store that a [Source] will use.
func (c *Config) Exchange(ctx context.Context, code, redirectURI, codeVerifier string) (*Token, error) {
	if code == "" {
		return nil, errors.New("bearer: Exchange: empty authorization code")
	}
	params := map[string]string{"grant_type": "authorization_code", "code": code}
	if redirectURI != "" {
		params["redirect_uri"] = redirectURI
	}
	if codeVerifier != "" {
		if err := checkVerifier(codeVerifier); err != nil {
			return nil, err
		}
		params["code_verifier"] = codeVerifier
	}
	tok, err := c.retrieve(ctx, params, []string{code, codeVerifier})
	if err != nil {
		return nil, err
	}
	return tok, nil
}

// GenerateVerifier returns a random PKCE code verifier (RFC 7636 section
// 4.1): 32 random bytes, base64url-encoded. It also makes a good state for
// [Config.AuthCodeURL].
func GenerateVerifier() string {
	b := make([]byte, 32)
	if _, err := crand.Read(b); err != nil {
		panic("bearer: crypto/rand failed: " + err.Error()) // never on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// s256Challenge returns the PKCE S256 code challenge of verifier, to send
// as code_challenge with code_challenge_method=S256.
func s256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
