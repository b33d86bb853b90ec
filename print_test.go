package bearer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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

// Distinctive secrets: none may appear in any printed form.
const (
	secAT = "AT-SECRET-7f3a"
	secRT = "RT-SECRET-91bc"
	secCS = "CS-SECRET-55de"
)

var secAll = []string{secAT, secRT, secCS}

// secCheck fails if text holds any of secrets.
func secCheck(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	if len(secrets) == 0 {
		secrets = secAll
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s holds the secret %q: %s", what, s, text)
		}
	}
}

func secToken() Token {
	return Token{
		AccessToken:   secAT,
		TokenType:     "Bearer",
		RefreshToken:  secRT,
		Expiry:        epNow.Add(time.Hour),
		RefreshExpiry: epNow.Add(24 * time.Hour),
		Info:          []byte(`{"user":"u1"}`),
	}
}

func secConfig() Config {
	cfg, _ := epConfig(nil)
	cfg.ClientSecret = secCS
	return cfg
}

// secHolder is a user struct that holds a Token, as applications do.
type secHolder struct {
	Name  string
	Tok   Token
	Ptr   *Token
	Cfg   Config
	CfgP  *Config
	Slice []Token
	Map   map[string]*Token
}

var secVerbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%20s", "%-40v"}

func TestSecretsFmt(t *testing.T) {
	tok := secToken()
	cfg := secConfig()
	holder := secHolder{Name: "h", Tok: tok, Ptr: &tok, Cfg: cfg, CfgP: &cfg, Slice: []Token{tok}, Map: map[string]*Token{"k": &tok}}
	values := []struct {
		name string
		v    any
	}{
		{"Token", tok},
		{"*Token", &tok},
		{"Config", cfg},
		{"*Config", &cfg},
		{"holder", holder},
		{"*holder", &holder},
		{"[]Token", []Token{tok}},
		{"[]*Token", []*Token{&tok}},
		{"map", map[string]Token{"k": tok}},
		{"anonymous struct", struct{ T Token }{tok}},
	}
	for _, v := range values {
		t.Run(v.name, func(t *testing.T) {
			for _, verb := range secVerbs {
				secCheck(t, fmt.Sprintf("Sprintf(%q, %s)", verb, v.name), fmt.Sprintf(verb, v.v))
			}
			secCheck(t, "Sprint", fmt.Sprint(v.v))
			secCheck(t, "Sprintln", fmt.Sprintln(v.v))
			secCheck(t, "Errorf", fmt.Errorf("wrapping %v: %w", v.v, errors.New("x")).Error())
		})
	}
	// The methods themselves.
	secCheck(t, "Token.String", tok.String())
	secCheck(t, "Token %#v", fmt.Sprintf("%#v", tok))
	secCheck(t, "Config.String", cfg.String())
	secCheck(t, "Config %#v", fmt.Sprintf("%#v", cfg))
}

func TestSecretsFmtShowsNonSecrets(t *testing.T) {
	// Redaction must not hide what is safe and useful to see.
	tok := secToken()
	cfg := secConfig()
	tests := []struct {
		name string
		got  string
		want []string
	}{
		{"Token", fmt.Sprintf("%v", tok), []string{"Bearer", "[redacted]", "2031-03-04T06:06:07Z"}},
		{"empty Token", fmt.Sprintf("%v", Token{}), []string{`AccessToken:""`}},
		{"Config", fmt.Sprintf("%v", cfg), []string{epURL, "client-1", "[redacted]"}},
		{"default Config", fmt.Sprintf("%v", Config{}), []string{DefaultTokenURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.got, w) {
					t.Errorf("%s printed = %q, want it to contain %q", tt.name, tt.got, w)
				}
			}
		})
	}
}

// secBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type secBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *secBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *secBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// secHandlers are slog's own handlers, each at debug level, writing to a
// secBuffer: what a user's logs would hold.
var secHandlers = []struct {
	name string
	new  func(w *secBuffer) slog.Handler
}{
	{"json", func(w *secBuffer) slog.Handler {
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	}},
	{"text", func(w *secBuffer) slog.Handler {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	}},
}

func TestSecretsSlog(t *testing.T) {
	tok := secToken()
	cfg := secConfig()
	for _, h := range secHandlers {
		t.Run(h.name, func(t *testing.T) {
			var buf secBuffer
			l := slog.New(h.new(&buf))
			l.Debug("token", "tok", tok)
			l.Debug("token pointer", "tok", &tok)
			l.Info("config", "cfg", cfg)
			l.Info("config pointer", "cfg", &cfg)
			l.LogAttrs(t.Context(), slog.LevelDebug, "attrs", slog.Any("tok", tok), slog.Any("cfg", &cfg))
			l.With("tok", tok).WithGroup("g").Warn("with", "cfg", cfg)
			l.Debug("group", slog.Group("g", "tok", &tok, "cfg", cfg))
			out := buf.String()
			if strings.Count(out, "\n") != 7 {
				t.Fatalf("log has %d lines, want 7:\n%s", strings.Count(out, "\n"), out)
			}
			secCheck(t, "log", out)
			for _, w := range []string{"client-1", "Bearer"} {
				if !strings.Contains(out, w) {
					t.Errorf("log does not contain %q:\n%s", w, out)
				}
			}
		})
	}
}
