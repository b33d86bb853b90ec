package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkit/bearer"
)

func (a *app) token(ctx context.Context, args []string) int {
	fs := a.flagSet("token", "[flags]")
	store := storeFlag(fs)
	cf := addClientFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	path, err := a.storePath(*store)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}

	src := bearer.NewSource(a.config(cf), bearer.NewFileStore(path))
	tok, err := src.Token(ctx)
	// Close waits for a refresh started ahead of expiry and for the last
	// attempt at a failed save: the rotated refresh token must be on disk
	// before the process ends.
	if cerr := src.Close(); err == nil && cerr != nil {
		return a.fail(fmt.Errorf("the new token could not be saved to %s, and the refresh token it replaced is spent: %w", path, cerr), path)
	}
	if err != nil {
		return a.fail(err, path)
	}
	fmt.Fprintln(a.stdout, tok.AccessToken)
	return exitOK
}

func (a *app) status(ctx context.Context, args []string) int {
	fs := a.flagSet("status", "[--store FILE]")
	store := storeFlag(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	path, err := a.storePath(*store)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	tok, err := bearer.NewFileStore(path).Load(ctx)
	if err != nil {
		return a.fail(err, path)
	}
	now := a.now()
	w := a.stdout
	fmt.Fprintf(w, "store:          %s\n", path)
	fmt.Fprintf(w, "token type:     %s\n", tok.Type())
	fmt.Fprintf(w, "access token:   %s\n", describe(tok.AccessToken != "", tok.Expiry, now))
	fmt.Fprintf(w, "refresh token:  %s\n", describe(tok.RefreshToken != "", tok.RefreshExpiry, now))
	fmt.Fprintf(w, "info:           %s\n", describeInfo(tok.Info))

	canRefresh := tok.RefreshToken != "" && (tok.RefreshExpiry.IsZero() || now.Before(tok.RefreshExpiry))
	switch {
	case tok.Valid(now):
		fmt.Fprintf(w, "state:          usable\n")
	case canRefresh:
		fmt.Fprintf(w, "state:          the access token expired; bearer token refreshes it\n")
	default:
		fmt.Fprintf(w, "state:          reauthorization needed\n")
		fmt.Fprintf(a.stderr, "bearer: the access token expired and there is no usable refresh token: authorize the app again (bearer exchange or bearer import)\n")
		return exitReauthorize
	}
	return exitOK
}

// describe says whether a token is present and when it expires, never
// what it is. Times print in now's location, the local one outside tests.
func describe(present bool, expiry, now time.Time) string {
	if !present {
		return "absent"
	}
	if expiry.IsZero() {
		return "present (redacted), no expiry given"
	}
	at := expiry.In(now.Location()).Format("2006-01-02 15:04:05 MST")
	if d := expiry.Sub(now); d > 0 {
		return fmt.Sprintf("present (redacted), expires %s (in %s)", at, human(d))
	}
	return fmt.Sprintf("present (redacted), expired %s (%s ago)", at, human(now.Sub(expiry)))
}

// human prints d rounded for reading: days past two days, else seconds.
func human(d time.Duration) string {
	if d >= 48*time.Hour {
		days := d / (24 * time.Hour)
		hours := (d % (24 * time.Hour)).Round(time.Hour) / time.Hour
		if hours == 24 {
			days, hours = days+1, 0
		}
		return fmt.Sprintf("%dd%dh", days, hours)
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// describeInfo names the top-level fields of info, not their values.
func describeInfo(info json.RawMessage) string {
	if len(info) == 0 {
		return "absent"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(info, &obj); err != nil {
		return fmt.Sprintf("present (%d bytes)", len(info))
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "present (empty object)"
	}
	return fmt.Sprintf("present (fields: %s)", strings.Join(keys, ", "))
}

// maxResponse caps what import reads: token responses are small.
const maxResponse = 1 << 20

// tokenResponse is the JSON answer of a token endpoint. The root package
// keeps its parser unexported, so import has its own.
type tokenResponse struct {
	TokenType        string          `json:"token_type"`
	ExpiresIn        lifetime        `json:"expires_in"`
	AccessToken      string          `json:"access_token"`
	RefreshToken     string          `json:"refresh_token"`
	RefreshExpiresIn lifetime        `json:"refresh_token_expires_in"`
	Info             json.RawMessage `json:"info"`
	Error            string          `json:"error"`
}

// lifetime is a number of seconds, sent as a number or a numeric string.
type lifetime int64

func (l *lifetime) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(bytes.TrimSpace(b), `"`)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f != f || f < 0 || f > 100*365*24*3600 { // f != f: NaN
		return fmt.Errorf("not a number of seconds")
	}
	*l = lifetime(f)
	return nil
}

// parseTokenResponse makes a Token of a token response received at now.
// Its errors quote nothing of the input, which holds secrets.
func parseTokenResponse(r io.Reader, now time.Time) (*bearer.Token, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading the token response: %w", err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("the token response is larger than %d bytes", maxResponse)
	}
	var resp tokenResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return nil, fmt.Errorf("the token response's field %q has the wrong type", ute.Field)
		}
		if strings.Contains(err.Error(), "not a number of seconds") {
			return nil, fmt.Errorf("a lifetime in the token response is not a number of seconds")
		}
		return nil, fmt.Errorf("the token response is not a JSON object")
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("the input is an error answer (error %.40q), not a token", resp.Error)
	}
	if resp.AccessToken == "" {
		return nil, fmt.Errorf("the token response has no access_token")
	}
	if !headerSafe(resp.AccessToken) || !headerSafe(resp.RefreshToken) {
		return nil, fmt.Errorf("a token holds spaces or control characters")
	}
	if resp.TokenType == "" {
		resp.TokenType = "Bearer"
	}
	if !strings.EqualFold(resp.TokenType, "Bearer") {
		return nil, fmt.Errorf("token_type %.20q is not Bearer", resp.TokenType)
	}
	t := &bearer.Token{
		AccessToken:  resp.AccessToken,
		TokenType:    resp.TokenType,
		RefreshToken: resp.RefreshToken,
	}
	if s := bytes.TrimSpace(resp.Info); len(s) > 0 && string(s) != "null" {
		t.Info = s
	}
	// expires_in 0 means unknown, as the library reads it.
	if resp.ExpiresIn > 0 {
		t.Expiry = now.Add(time.Duration(resp.ExpiresIn) * time.Second)
	}
	if resp.RefreshExpiresIn > 0 {
		t.RefreshExpiry = now.Add(time.Duration(resp.RefreshExpiresIn) * time.Second)
	}
	return t, nil
}

// headerSafe reports whether s can go into a header: no spaces or control
// characters.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
