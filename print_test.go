package bearer

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Printing: every exported type of the package, printed with every fmt verb
// and by slog's handlers, directly and nested, shows no access token,
// refresh token, client secret or key; and where redaction stops (the Token
// doc) is pinned from the other side.

// prVerbs are fmt's verbs, the wrong ones included: fmt reports a wrong
// verb by printing the value with %v and no method, which opens pointers
// %v leaves shut. %p is tried on all but Token and Config values, which it
// prints whole (TestPrintWhereRedactionStops).
var prVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%e", "%t", "%c", "%U", "%T %v", "%20s", "%-40v", "%08.3f"}

// prKey is an AES key; its expanded form begins with "KEY-" as a
// little-endian word, 760825163.
var prKey = []byte("KEY-SECRET-0123456789abcdef-KEYS")

// prSecrets are what no printed form may hold: the tokens, the client
// secret, and the key as text and as the expanded key's first word.
var prSecrets = []string{secAT, secRT, secCS, "KEY-SECRET", "760825163", "2d59454b"}

// prHolder keeps the package's types in exported fields, as applications do.
type prHolder struct {
	Tok   Token
	TokP  *Token
	Cfg   Config
	CfgP  *Config
	Src   *Source
	Mem   *MemoryStore
	MemV  MemoryStore
	File  FileStore
	FileP *FileStore
	Codec Codec
	Tr    Transport
	TrP   *Transport
	Lease Lease
	Err   error
	Any   []any
	Map   map[string]any
}

// prValues returns every value to print, named, and closes what it opened
// when the test ends.
func prValues(t *testing.T) []struct {
	name string
	v    any
} {
	tok := secToken()
	cfg := secConfig()
	ms := NewMemoryStore(&tok)
	src := NewSource(Config{ClientSecret: secCS}, ms)
	if _, err := src.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	codec, err := NewAESGCM(prKey)
	if err != nil {
		t.Fatal(err)
	}
	fs := FileStore{Codec: codec, path: fsPath(t)}
	lease, err := ms.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lease.Unlock(t.Context()) })
	tr := &Transport{Source: src}
	re := &RetrieveError{StatusCode: 400, ErrorCode: "invalid_grant"}
	h := &prHolder{
		Tok: tok, TokP: &tok, Cfg: cfg, CfgP: &cfg, Src: src, Mem: ms, File: fs, FileP: &fs, Codec: codec,
		Tr: Transport{Source: src}, TrP: tr, Lease: lease, Err: re,
		Any: []any{tok, &tok, cfg, src, ms, fs, codec, tr},
		Map: map[string]any{"tok": tok, "src": src, "store": ms},
	}
	if err := h.MemV.Save(t.Context(), &tok); err != nil {
		t.Fatal(err)
	}
	// Kept in unexported fields, where fmt calls no method: the stores
	// still print nothing secret.
	hidden := &struct {
		m  *MemoryStore
		f  FileStore
		fp *FileStore
		c  Codec
		l  Lease
	}{ms, fs, &fs, codec, lease}
	return []struct {
		name string
		v    any
	}{
		{"Token", tok}, {"*Token", &tok}, {"Config", cfg}, {"*Config", &cfg}, {"*Source", src},
		{"*MemoryStore", ms}, {"FileStore", fs}, {"*FileStore", &fs}, {"Codec", codec},
		{"*Transport", tr}, {"Lease", lease}, {"*RetrieveError", re}, {"Stats", src.Stats()},
		{"holder", h}, {"[]Token", []Token{tok}}, {"map[string]*Token", map[string]*Token{"k": &tok}},
		{"[]any", h.Any}, {"unexported fields", hidden},
	}
}

func TestPrintNoSecrets(t *testing.T) {
	for _, v := range prValues(t) {
		t.Run(v.name, func(t *testing.T) {
			verbs := prVerbs
			if v.name != "Token" && v.name != "Config" {
				verbs = append(verbs, "%p")
			}
			for _, verb := range verbs {
				secCheck(t, fmt.Sprintf("Sprintf(%q)", verb), fmt.Sprintf(verb, v.v), prSecrets...)
			}
			secCheck(t, "Sprint", fmt.Sprint(v.v), prSecrets...)
			secCheck(t, "Errorf %w", fmt.Errorf("wrapping %v: %w", v.v, fmt.Errorf("%s", v.v)).Error(), prSecrets...)
		})
	}
}

func TestPrintSlogNoSecrets(t *testing.T) {
	tok := secToken()
	for _, h := range []struct {
		name string
		new  func(*secBuffer) slog.Handler
	}{
		{"text", func(b *secBuffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"json", func(b *secBuffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		t.Run(h.name, func(t *testing.T) {
			for _, v := range prValues(t) {
				var buf secBuffer
				l := slog.New(h.new(&buf))
				if h.name == "json" && strings.Contains(v.name, "Token") && v.name != "Token" && v.name != "*Token" {
					continue // nested Tokens: see TestPrintWhereRedactionStops
				}
				l.Info("value", "v", v.v)
				l.Info("group", slog.Group("g", "v", v.v))
				l.With("w", v.v).Info("with")
				secCheck(t, v.name, buf.String(), prSecrets...)
			}
			// The text handler prints what is nested with fmt, which
			// calls Token's methods.
			if h.name == "text" {
				var buf secBuffer
				slog.New(h.new(&buf)).Info("nested", "slice", []Token{tok}, "map", map[string]Token{"k": tok}, "struct", struct{ T Token }{tok})
				secCheck(t, "nested", buf.String(), prSecrets...)
			}
		})
	}
}

// TestPrintWhereRedactionStops pins the other side of the Token doc:
// encoding/json keeps the tokens, slog's JSON handler encodes nested
// values with it, and fmt calls no method in an unexported field.
func TestPrintWhereRedactionStops(t *testing.T) {
	tok := secToken()
	shows := func(what, text string, secrets ...string) {
		t.Helper()
		for _, s := range secrets {
			if !strings.Contains(text, s) {
				t.Errorf("%s = %s, want it to hold %q (the Token doc says so)", what, text, s)
			}
		}
	}
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	shows("json.Marshal(Token)", string(b), secAT, secRT)
	var back Token
	if err := json.Unmarshal(b, &back); err != nil || back.AccessToken != secAT || back.RefreshToken != secRT || !back.Expiry.Equal(tok.Expiry) {
		t.Errorf("json round trip = %v, %v; want the token back", back, err)
	}

	for name, v := range map[string]any{"slice": []Token{tok}, "map": map[string]Token{"k": tok}, "struct": struct{ T Token }{tok}} {
		var buf secBuffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("nested", "v", v)
		shows("slog JSON, a Token in a "+name, buf.String(), secAT, secRT)
	}

	shows("%v of a Token in an unexported field", fmt.Sprintf("%v", struct{ t Token }{tok}), secAT, secRT)
	pointerVerb := "%p" // a variable, or vet would object
	shows("%p of a Token", fmt.Sprintf(pointerVerb, tok), secAT, secRT)
	shows("%p of a Config", fmt.Sprintf(pointerVerb, secConfig()), secCS)
	if got := fmt.Sprintf(pointerVerb, &tok); strings.Contains(got, secAT) {
		t.Errorf("%%p of a *Token = %s, want only its address", got)
	}
	src := NewSource(Config{ClientSecret: secCS, Now: func() time.Time { return epNow }}, NewMemoryStore(&tok))
	defer src.Close()
	wrongVerb := "%s" // any verb but %v; a variable, or vet would object
	shows("%s of a *Source in an unexported field", fmt.Sprintf(wrongVerb, struct{ s *Source }{src}), secCS)
	if got := fmt.Sprintf("%v", struct{ s *Source }{src}); strings.Contains(got, secCS) {
		t.Errorf("%%v of a *Source in an unexported field = %s, want only its address", got)
	}
}
