package bearer

// This file reads token endpoint answers: the wire format of RFC 6749
// section 5 and OpenTicket's, into a Token.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkit/bearer/internal/tokenanswer"
)

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
	if !headerSafe(w.AccessToken) || !vschar(w.RefreshToken) {
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

func init() {
	tokenanswer.Parse = func(body []byte, contentType string, now time.Time) (any, error) {
		return parseTokenResponse(body, contentType, now)
	}
}

// parseTokenResponse parses a token endpoint's successful answer, as the
// authorization_code grant returns it, with Expiry and RefreshExpiry
// computed from now: internal/tokenanswer gives it to the bearer command's
// import. The body is JSON unless contentType says
// application/x-www-form-urlencoded. It applies the checks a refresh
// applies. Its errors quote no token: only an OAuth error answer's code
// and description, and the first characters of a token_type that is not
// Bearer.
func parseTokenResponse(body []byte, contentType string, now time.Time) (*Token, error) {
	if len(body) > maxBody {
		return nil, fmt.Errorf("bearer: token response: larger than %d bytes", maxBody)
	}
	w, err := decodeToken(body, contentType)
	if err != nil {
		return nil, errorf("token response: %w", err)
	}
	if w.Error != "" {
		return nil, &RetrieveError{ErrorCode: clean(w.Error, nil, 64), ErrorDescription: clean(w.ErrorDescription, nil, 200)}
	}
	t, err := w.token(now)
	if err != nil {
		return nil, errorf("token response: %w", err)
	}
	return t, nil
}

// vschar reports whether s is made of RFC 6749's VSCHAR (%x20-7E), as a
// refresh token is. It travels in a request body, never in a header, so
// a space is allowed.
func vschar(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// salvage reads the refresh token, and its lifetime if it can, from a
// successful answer that is otherwise unusable. present reports a
// refresh_token field, readable or not.
func salvage(body []byte, now time.Time) (rt string, expiry time.Time, present bool) {
	var exp seconds
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) == nil {
		raw, ok := m["refresh_token"]
		if !ok {
			return "", time.Time{}, false
		}
		if json.Unmarshal(raw, &rt) != nil {
			return "", time.Time{}, true
		}
		if raw, ok := m["refresh_token_expires_in"]; ok && exp.UnmarshalJSON(raw) != nil {
			exp = seconds{}
		}
	} else if vals, err := url.ParseQuery(string(body)); err == nil && vals.Has("refresh_token") {
		present = true
		rt = vals.Get("refresh_token")
		if exp.parse(vals.Get("refresh_token_expires_in")) != nil {
			exp = seconds{}
		}
	} else {
		return "", time.Time{}, false
	}
	if rt == "" || !vschar(rt) {
		return "", time.Time{}, true
	}
	if exp.set && exp.n > 0 {
		expiry = now.Add(time.Duration(exp.n) * time.Second)
	}
	return rt, expiry, true
}
