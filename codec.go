package bearer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
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
	return gcmCodec{aead}, nil
}

type gcmCodec struct{ aead cipher.AEAD }

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
// (internal/tokenjson gives it to redisstore).
func marshalToken(t *Token) ([]byte, error) {
	if t == nil {
		return nil, fmt.Errorf("bearer: cannot encode a nil token")
	}
	return json.Marshal(toStored(t))
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
