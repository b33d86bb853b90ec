package bearer

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkit/bearer/internal/issuer"
)

// Token is an OAuth 2.0 token pair: an access token that authenticates
// requests and the refresh token that buys the next one.
//
// A Token prints itself redacted: String, Format and LogValue show
// neither the access token nor the refresh token, so fmt's verbs and slog's
// handlers print it redacted, by value or by pointer, also in an exported
// field of a struct, a slice, an array, a map or an interface. Redaction
// stops where those methods are not called:
//   - encoding/json keeps both tokens, so that a Token can be stored
//     (the stores keep it in that form). slog's JSON handler
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

	// issuer is the token endpoint and client the token was issued to
	// (issuer.go); unknown for a token built by hand or stored before it
	// was recorded.
	issuer issuer.Record
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

// encodingName is "json", "form", or the number of an unknown Encoding.
func encodingName(e Encoding) string {
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

// scheme returns the token type to send: "Bearer" when TokenType is empty or
// "bearer" in any case (RFC 6750's scheme, which some APIs compare case
// sensitively), otherwise TokenType as the server named it.
func (t *Token) scheme() string {
	if t.TokenType == "" || strings.EqualFold(t.TokenType, "bearer") {
		return "Bearer"
	}
	return t.TokenType
}
