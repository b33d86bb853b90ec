package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tokenkit/bearer"
)

func (a *app) token(ctx context.Context, args []string) int {
	fs := a.flagSet("token", "[flags]")
	store := storeFlag(fs)
	cf := addClientFlags(fs)
	path, cfg, code, ok := a.parseClient(fs, args, store, cf)
	if !ok {
		return code
	}
	w := a.newWaits(&cfg, path, cf.verbose)
	src := bearer.NewSource(cfg, bearer.NewFileStore(path))
	tok, err := src.Token(ctx)
	w.stop()
	if cerr := a.closeSource(ctx, src, path); err == nil && cerr != nil {
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
	if code, ok := a.parseFlags(fs, args); !ok {
		return code
	}
	path, code, ok := a.storeFile(fs, *store)
	if !ok {
		return code
	}
	tok, err := bearer.NewFileStore(path).Load(ctx)
	if err != nil {
		return a.fail(err, path)
	}
	now := a.now()
	w := a.stdout
	fmt.Fprintf(w, "store:          %s\n", path)
	fmt.Fprintf(w, "token type:     %s\n", tokenType(tok))
	a.describeStored(w, "", tok)
	fmt.Fprintf(w, "info:           %s\n", describeInfo(tok.Info))

	switch {
	case tok.Valid(now):
		fmt.Fprintf(w, "state:          usable\n")
	case live(tok, now):
		fmt.Fprintf(w, "state:          the access token expired; bearer token refreshes it\n")
	default:
		fmt.Fprintf(w, "state:          reauthorization needed\n")
		fmt.Fprintf(a.stderr, "bearer: the access token expired and there is no usable refresh token: authorize the app again (bearer login)\n")
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

// tokenType is the scheme tok is sent with.
func tokenType(tok *bearer.Token) string {
	if tok.TokenType == "" || strings.EqualFold(tok.TokenType, "bearer") {
		return "Bearer"
	}
	return tok.TokenType
}
