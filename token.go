package bearer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Token is an OAuth 2.0 token pair: an access token that authenticates
// requests and the refresh token that buys the next one.
//
// A Token prints itself redacted: String, GoString, Format and LogValue show
// neither the access token nor the refresh token, so fmt's verbs and slog's
// handlers print it redacted, by value or by pointer, also in an exported
// field of a struct, a slice, an array, a map or an interface. Redaction
// stops where those methods are not called:
//   - encoding/json keeps both tokens, so that a Token can be stored
//     ([MarshalToken] is the form the stores use). slog's JSON handler
//     encodes a Token nested in a slice, a map or a struct that way; only a
//     Token that is an attribute's value itself, or in a group, goes through
//     LogValue.
//   - fmt calls no method on a value in an unexported struct field (it
//     prints a Token's fields there), nor when it reports a wrong verb: %p
//     of a Token value, not a pointer, prints its fields, and so does a
//     verb other than %v for a pointer in an unexported field.
//
// The same holds for a [Config] and its client secret, and so for a *Source
// in an unexported field; [MemoryStore] and [FileStore] print nothing
// secret wherever they are. Tokens handed out by a [Source] are shared: the
// returned Token must not be modified.
type Token struct {
	// AccessToken authenticates requests.
	AccessToken string
	// TokenType is the type as the server sent it; "Bearer" when it sent none.
	TokenType string
	// RefreshToken obtains the next token. On servers such as OpenTicket
	// it can be used once: a refresh returns a new one and kills the old.
	RefreshToken string
	// Expiry is when the access token expires; zero means unknown or never.
	Expiry time.Time
	// RefreshExpiry is when the refresh token expires; zero means unknown.
	RefreshExpiry time.Time
	// Info is the response's "info" object, verbatim; nil when absent.
	Info json.RawMessage

	// Obtained is when the token endpoint answered; zero means unknown.
	// The default refresh windows are fractions of the lifetime from
	// Obtained to Expiry; a Store of your own should keep it.
	Obtained time.Time
}

// Encoding selects how a token request body is encoded.
type Encoding int

const (
	// JSON sends an application/json body, as OpenTicket wants. It is the
	// zero value.
	JSON Encoding = iota
	// Form sends an application/x-www-form-urlencoded body, as RFC 6749
	// section 4.1.3 and 6 describe.
	Form
)

// String returns "json" or "form".
func (e Encoding) String() string {
	switch e {
	case JSON:
		return "json"
	case Form:
		return "form"
	}
	return "Encoding(" + strconv.Itoa(int(e)) + ")"
}

// redacted stands in for a secret in every printed form.
const redacted = "[redacted]"

func redact(s string) string {
	if s == "" {
		return `""`
	}
	return redacted
}

// String describes t without its secrets.
func (t Token) String() string {
	var b strings.Builder
	b.WriteString("bearer.Token{AccessToken:")
	b.WriteString(redact(t.AccessToken))
	b.WriteString(" TokenType:")
	b.WriteString(strconv.Quote(t.TokenType))
	b.WriteString(" RefreshToken:")
	b.WriteString(redact(t.RefreshToken))
	b.WriteString(" Expiry:")
	b.WriteString(fmtTime(t.Expiry))
	b.WriteString(" RefreshExpiry:")
	b.WriteString(fmtTime(t.RefreshExpiry))
	if t.Info != nil {
		fmt.Fprintf(&b, " Info:%d bytes", len(t.Info))
	}
	b.WriteString("}")
	return b.String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// GoString is String: %#v must not print secrets either.
func (t Token) GoString() string { return t.String() }

// Format makes every fmt verb print the redacted form.
func (t Token) Format(f fmt.State, verb rune) { io.WriteString(f, t.String()) }

// LogValue makes slog print t redacted.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_token", redact(t.AccessToken)),
		slog.String("token_type", t.TokenType),
		slog.String("refresh_token", redact(t.RefreshToken)),
		slog.Time("expiry", t.Expiry),
		slog.Time("refresh_expiry", t.RefreshExpiry),
	)
}

// Valid reports whether t has an access token that has not expired at now.
// A zero Expiry never expires.
func (t *Token) Valid(now time.Time) bool {
	return t != nil && t.AccessToken != "" && (t.Expiry.IsZero() || now.Before(t.Expiry))
}

// Type returns the token type to send, "Bearer" when TokenType is empty.
func (t *Token) Type() string {
	if t.TokenType == "" {
		return "Bearer"
	}
	return t.TokenType
}

// maxBody caps every token endpoint response read: answers are small, and
// a hostile or broken server must not exhaust memory.
const maxBody = 1 << 20

// wireToken is a token endpoint answer, successful or not.
type wireToken struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	RefreshToken     string          `json:"refresh_token"`
	ExpiresIn        seconds         `json:"expires_in"`
	RefreshExpiresIn seconds         `json:"refresh_token_expires_in"`
	Info             json.RawMessage `json:"info"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
	ErrorURI         string          `json:"error_uri"`
}

// seconds is a lifetime that servers send as a number or a numeric string.
type seconds struct {
	n   int64
	set bool
}

func (s *seconds) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		b = []byte(str)
	}
	return s.parse(string(b))
}

func (s *seconds) parse(str string) error {
	str = strings.TrimSpace(str)
	if str == "" {
		return nil
	}
	f, err := strconv.ParseFloat(str, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("not a number of seconds")
	}
	if f < 0 {
		return fmt.Errorf("negative")
	}
	// A hundred years is "never" for any client; larger values would
	// overflow time.Duration.
	const max = 100 * 365 * 24 * 3600
	if f > max {
		f = max
	}
	s.n, s.set = int64(f), true
	return nil
}

// decodeToken parses a token endpoint body. It returns the wire form so the
// caller can tell an OAuth error answer from a token.
func decodeToken(body []byte, contentType string) (*wireToken, error) {
	var w wireToken
	mt, _, _ := mime.ParseMediaType(contentType)
	// A body that is a JSON object is read as one, whatever its label.
	isJSON := bytes.HasPrefix(bytes.TrimSpace(body), []byte("{"))
	if !isJSON && (mt == "application/x-www-form-urlencoded" || mt == "text/plain") {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("malformed form body")
		}
		w.AccessToken = vals.Get("access_token")
		w.TokenType = vals.Get("token_type")
		w.RefreshToken = vals.Get("refresh_token")
		w.Error = vals.Get("error")
		w.ErrorDescription = vals.Get("error_description")
		w.ErrorURI = vals.Get("error_uri")
		if err := w.ExpiresIn.parse(vals.Get("expires_in")); err != nil {
			return nil, fmt.Errorf("expires_in: %v", err)
		}
		if err := w.RefreshExpiresIn.parse(vals.Get("refresh_token_expires_in")); err != nil {
			return nil, fmt.Errorf("refresh_token_expires_in: %v", err)
		}
		if info := vals.Get("info"); info != "" && json.Valid([]byte(info)) {
			w.Info = json.RawMessage(info)
		}
		return &w, nil
	}
	if err := json.Unmarshal(body, &w); err != nil {
		// The error text of encoding/json can quote parts of the body,
		// and the body holds secrets: say only what kind of problem it is.
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return nil, fmt.Errorf("field %q has the wrong type", ute.Field)
		case strings.Contains(err.Error(), "expires_in"):
			return nil, fmt.Errorf("a lifetime is not a non-negative number")
		default:
			return nil, fmt.Errorf("not a JSON object")
		}
	}
	if string(bytes.TrimSpace(w.Info)) == "null" {
		w.Info = nil
	}
	return &w, nil
}

// token validates a successful answer and makes it a Token with absolute
// expiries computed from now, the time of receipt.
func (w *wireToken) token(now time.Time) (*Token, error) {
	if w.AccessToken == "" {
		return nil, fmt.Errorf("no access_token")
	}
	if !headerSafe(w.AccessToken) || !headerSafe(w.RefreshToken) {
		return nil, fmt.Errorf("a token holds characters not allowed in a header")
	}
	if w.TokenType != "" && (!strings.EqualFold(w.TokenType, "bearer") || !headerSafe(w.TokenType)) {
		// Only the type name is safe to show: it is not a secret.
		return nil, fmt.Errorf("token_type %.20q is not Bearer", w.TokenType)
	}
	t := &Token{
		AccessToken:  w.AccessToken,
		TokenType:    w.TokenType,
		RefreshToken: w.RefreshToken,
		Info:         w.Info,
		Obtained:     now,
	}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	// expires_in of 0 is read as "unknown", as golang.org/x/oauth2 does.
	if w.ExpiresIn.set && w.ExpiresIn.n > 0 {
		t.Expiry = now.Add(time.Duration(w.ExpiresIn.n) * time.Second)
	}
	if w.RefreshExpiresIn.set && w.RefreshExpiresIn.n > 0 {
		t.RefreshExpiry = now.Add(time.Duration(w.RefreshExpiresIn.n) * time.Second)
	}
	return t, nil
}

// headerSafe reports whether s can be sent in a header value: no control
// characters (CR and LF would split the header), no spaces, no DEL.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// ParseTokenResponse parses a token endpoint's successful answer, as the
// authorization_code grant returns it, with Expiry and RefreshExpiry
// computed from now. The body is JSON unless contentType says
// application/x-www-form-urlencoded. It applies the checks a refresh
// applies. Its errors quote no token: only an OAuth error answer's code and
// description, and the first characters of a token_type that is not Bearer.
// Use it to store a token obtained elsewhere.
func ParseTokenResponse(body []byte, contentType string, now time.Time) (*Token, error) {
	if len(body) > maxBody {
		return nil, fmt.Errorf("bearer: token response: larger than %d bytes", maxBody)
	}
	w, err := decodeToken(body, contentType)
	if err != nil {
		return nil, fmt.Errorf("bearer: token response: %w", err)
	}
	if w.Error != "" {
		return nil, &RetrieveError{ErrorCode: clean(w.Error, nil, 64), ErrorDescription: clean(w.ErrorDescription, nil, 200)}
	}
	t, err := w.token(now)
	if err != nil {
		return nil, fmt.Errorf("bearer: token response: %w", err)
	}
	return t, nil
}
