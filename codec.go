package bearer

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tokenkit/bearer/internal/tokenjson"

	"github.com/tokenkit/bearer/internal/issuer"
)

// Codec transforms a stored token at rest, for example to encrypt it:
// refresh tokens are long-lived credentials. [FileStore] and the redisstore
// package accept one. Seal and Open must be safe for concurrent use, and
// Open must reject what Seal did not produce.
type Codec interface {
	Seal(plaintext []byte) ([]byte, error)
	Open(ciphertext []byte) ([]byte, error)
}

// ErrDecrypt is reported, wrapped, when a sealed token cannot be opened:
// the wrong key, or data that was altered.
var ErrDecrypt = errors.New("bearer: cannot decrypt the stored token (wrong key or altered data)")

// NewAESGCM returns a [Codec] that encrypts with AES-GCM under key, which
// must be 16, 24 or 32 bytes long (AES-128, -192 or -256). Each Seal uses a
// fresh random nonce.
func NewAESGCM(key []byte) (Codec, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("bearer: AES-GCM key: need 16, 24 or 32 bytes, got %d", len(key))
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errorf("AES-GCM: %w", err)
	}
	// A pointer: fmt, meeting the Codec where it calls no method (in an
	// unexported field), opens one pointer but not two, and the AEAD
	// holds the expanded key.
	return &gcmCodec{aead}, nil
}

type gcmCodec struct{ aead cipher.AEAD }

// Format prints the Codec without its key, for every verb: fmt would
// follow the cipher to the expanded key.
func (c gcmCodec) Format(f fmt.State, verb rune) { io.WriteString(f, "bearer.AESGCM{key:[redacted]}") }

// codecMagic marks sealed data so a plain file is told apart from a sealed one.
const codecMagic = "bearer-aesgcm-v1:"

func (c gcmCodec) Seal(plaintext []byte) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, errorf("AES-GCM nonce: %w", err)
	}
	out := append([]byte(codecMagic), c.aead.Seal(nonce, nonce, plaintext, []byte(codecMagic))...)
	return out, nil
}

func (c gcmCodec) Open(data []byte) ([]byte, error) {
	if len(data) < len(codecMagic) || string(data[:len(codecMagic)]) != codecMagic {
		return nil, fmt.Errorf("%w: not sealed by AES-GCM", ErrDecrypt)
	}
	data = data[len(codecMagic):]
	n := c.aead.NonceSize()
	if len(data) < n+c.aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrDecrypt)
	}
	pt, err := c.aead.Open(nil, data[:n], data[n:], []byte(codecMagic))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// storedToken is the JSON form of a Token at rest.
type storedToken struct {
	AccessToken   string     `json:"access_token"`
	TokenType     string     `json:"token_type,omitempty"`
	RefreshToken  string     `json:"refresh_token,omitempty"`
	Expiry        *time.Time `json:"expiry,omitempty"`
	RefreshExpiry *time.Time `json:"refresh_expiry,omitempty"`
	Obtained      *time.Time `json:"obtained,omitempty"`
	// TokenURL and ClientID record whom the token was issued to; stores
	// written before they were recorded lack them.
	TokenURL string `json:"token_url,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	// Info is kept as a string so that its bytes survive verbatim:
	// encoding/json would compact or re-indent a raw message.
	Info *string `json:"info,omitempty"`
}

func init() {
	tokenjson.Marshal = func(t any) ([]byte, error) { return marshalToken(t.(*Token)) }
	tokenjson.Unmarshal = func(b []byte) (any, error) { return unmarshalToken(b) }
}

// marshalToken returns the JSON form in which the stores keep t
// (internal/tokenjson gives it to redisstore). It holds the secrets in
// clear: the stores seal it with their [Codec].
//
// It refuses, with an error wrapping [ErrUnstorable], a token that
// unmarshalToken would refuse or read back changed: what it returns,
// unmarshalToken reads.
func marshalToken(t *Token) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("bearer: cannot encode a nil token")
	}
	s := toStored(t)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<" stays one byte, not six
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnstorable, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	var back storedToken
	if err := json.Unmarshal(b, &back); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnstorable, err)
	}
	if err := readsBack(s, back); err != nil {
		return nil, err
	}
	return b, nil
}

// readsBack reports, wrapping ErrUnstorable, why back, read from what was
// written for s, is not a token that reads as s: nil if it is.
func readsBack(s, back storedToken) error {
	if _, err := back.token(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnstorable, err)
	}
	if !s.equal(back) {
		// JSON carries only UTF-8, and times to the second of their
		// zone's offset.
		return fmt.Errorf("%w: it would read back changed (text that is not UTF-8, or a time that JSON cannot hold)", ErrUnstorable)
	}
	return nil
}

func (s storedToken) equal(o storedToken) bool {
	sameTime := func(a, b *time.Time) bool { return (a == nil) == (b == nil) && (a == nil || a.Equal(*b)) }
	return s.AccessToken == o.AccessToken && s.TokenType == o.TokenType && s.RefreshToken == o.RefreshToken &&
		sameTime(s.Expiry, o.Expiry) && sameTime(s.RefreshExpiry, o.RefreshExpiry) && sameTime(s.Obtained, o.Obtained) &&
		(s.Info == nil) == (o.Info == nil) && (s.Info == nil || *s.Info == *o.Info)
}

// unmarshalToken parses what marshalToken produced. It rejects anything
// else with an error that quotes none of the input.
func unmarshalToken(b []byte) (*Token, error) {
	var s storedToken
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bearer: stored token is not valid JSON")
	}
	return s.token()
}

func toStored(t *Token) storedToken {
	s := storedToken{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		TokenURL:     t.issuer.TokenURL,
		ClientID:     t.issuer.ClientID,
	}
	if t.Info != nil {
		info := string(t.Info)
		s.Info = &info
	}
	if !t.Expiry.IsZero() {
		e := t.Expiry
		s.Expiry = &e
	}
	if !t.RefreshExpiry.IsZero() {
		e := t.RefreshExpiry
		s.RefreshExpiry = &e
	}
	if !t.Obtained.IsZero() {
		o := t.Obtained
		s.Obtained = &o
	}
	return s
}

func (s *storedToken) token() (*Token, error) {
	if s.AccessToken == "" && s.RefreshToken == "" {
		return nil, fmt.Errorf("bearer: stored token has neither an access nor a refresh token")
	}
	if !headerSafe(s.AccessToken) || !vschar(s.RefreshToken) || !headerSafe(s.TokenType) {
		return nil, fmt.Errorf("bearer: stored token holds characters not allowed in a header")
	}
	t := &Token{
		AccessToken:  s.AccessToken,
		TokenType:    s.TokenType,
		RefreshToken: s.RefreshToken,
		issuer:       issuer.Record{TokenURL: s.TokenURL, ClientID: s.ClientID},
	}
	if s.Info != nil {
		if !json.Valid([]byte(*s.Info)) {
			return nil, fmt.Errorf("bearer: stored token's info is not JSON")
		}
		t.Info = json.RawMessage(*s.Info)
	}
	if s.Expiry != nil {
		t.Expiry = *s.Expiry
	}
	if s.RefreshExpiry != nil {
		t.RefreshExpiry = *s.RefreshExpiry
	}
	if s.Obtained != nil {
		t.Obtained = *s.Obtained
	}
	return t, nil
}
