package bearer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The leak oracle: the ways a reader may decode what an error shows,
// written again with other means than redact.go (regular expressions,
// encoding/json, html.UnescapeString on whole segments), so that a bug in
// the redactor's decoders is not also in the test.

var (
	rdPercentRE = regexp.MustCompile(`%[0-9a-fA-F]{2}`)
	rdJSONRE    = regexp.MustCompile(`\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|["\\/bfnrt])`)
	rdEitherRE  = regexp.MustCompile(rdPercentRE.String() + `|` + rdJSONRE.String())
)

// rdUnescape decodes one percent or JSON escape.
func rdUnescape(m string) string {
	if m[0] == '%' {
		b, _ := hex.DecodeString(m[1:])
		return string(b)
	}
	var s string
	if err := json.Unmarshal([]byte(`"`+m+`"`), &s); err != nil {
		panic(err)
	}
	return s
}

// rdDecoders are the readings of one round: each kind alone, and all at
// once (HTML references only in the text between the other escapes).
var rdDecoders = []func(string) string{
	html.UnescapeString,
	func(s string) string { return rdPercentRE.ReplaceAllStringFunc(s, rdUnescape) },
	func(s string) string { return rdJSONRE.ReplaceAllStringFunc(s, rdUnescape) },
	func(s string) string {
		var b strings.Builder
		last := 0
		for _, m := range rdEitherRE.FindAllStringIndex(s, -1) {
			b.WriteString(html.UnescapeString(s[last:m[0]]))
			b.WriteString(rdUnescape(s[m[0]:m[1]]))
			last = m[1]
		}
		b.WriteString(html.UnescapeString(s[last:]))
		return b.String()
	},
}

// rdFold makes a text and a secret comparable: white space and '+' are one
// space, runs of it fold, characters that print as nothing go, bytes that
// are not UTF-8 stay.
func rdFold(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteByte(s[0])
		case unicode.IsSpace(r) || r == '+':
			if !strings.HasSuffix(b.String(), " ") {
				b.WriteByte(' ')
			}
		case unicode.IsPrint(r):
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// rdLeak returns what shows of a secret in some reading of out (up to three
// rounds of decoding): the secret, if shorter than 8 characters, or a run
// of 8 of them; "" if nothing does. Secrets under 4 characters are not
// looked for.
func rdLeak(out string, secrets []string) string {
	readings := []string{out}
	seen := map[string]bool{out: true}
	level := readings
	for range 3 {
		var next []string
		for _, s := range level {
			for _, dec := range rdDecoders {
				if d := dec(s); !seen[d] {
					seen[d] = true
					next = append(next, d)
				}
			}
		}
		readings = append(readings, next...)
		level = next
	}
	for _, r := range readings {
		text := rdFold(r)
		for _, sec := range secrets {
			f := rdFold(sec)
			switch {
			case len(f) < 4:
			case len(f) < 8:
				if strings.Contains(text, f) {
					return f
				}
			default:
				for i := 0; i+8 <= len(f); i++ {
					if strings.Contains(text, f[i:i+8]) {
						return f[i : i+8]
					}
				}
			}
		}
	}
	return ""
}

// rdNamed are HTML named references servers use for characters of tokens
// and secrets.
var rdNamed = map[rune]string{
	'+': "&plus;", '/': "&sol;", '=': "&equals;", '&': "&amp;", '<': "&lt;", '>': "&gt;",
	'"': "&quot;", '\'': "&apos;", '#': "&num;", '%': "&percnt;", '_': "&lowbar;", '.': "&period;",
	':': "&colon;", ';': "&semi;", '!': "&excl;", '?': "&quest;", '@': "&commat;", '$': "&dollar;",
	'(': "&lpar;", ')': "&rpar;", '*': "&ast;", ',': "&comma;", '[': "&lsqb;", ']': "&rsqb;",
	'{': "&lcub;", '}': "&rcub;", '|': "&verbar;", '^': "&Hat;", '`': "&grave;", '\\': "&bsol;",
	'~': "&#126;", ' ': "&nbsp;",
}

func rdPercent(r rune, format string) string {
	var b strings.Builder
	for _, c := range []byte(string(r)) {
		fmt.Fprintf(&b, format, c)
	}
	return b.String()
}

func rdJSONU(r rune, format string) string {
	if r >= 0x10000 {
		r1, r2 := utf16EncodeRune(r)
		return fmt.Sprintf(format+format, r1, r2)
	}
	return fmt.Sprintf(format, r)
}

// utf16EncodeRune splits r into a surrogate pair, written out so that the
// test does not share unicode/utf16 with the code.
func utf16EncodeRune(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + r>>10&0x3ff, 0xdc00 + r&0x3ff
}

// rdEncodings write one character the ways a server may echo it.
var rdEncodings = []struct {
	name string
	enc  func(r rune) string
}{
	{"raw", func(r rune) string { return string(r) }},
	{"html-decimal", func(r rune) string { return fmt.Sprintf("&#%d;", r) }},
	{"html-hex", func(r rune) string { return fmt.Sprintf("&#x%x;", r) }},
	{"html-hex-upper", func(r rune) string { return fmt.Sprintf("&#X%06X;", r) }},
	{"html-named", func(r rune) string {
		if n, ok := rdNamed[r]; ok {
			return n
		}
		return fmt.Sprintf("&#%d;", r)
	}},
	{"percent-upper", func(r rune) string { return rdPercent(r, "%%%02X") }},
	{"percent-lower", func(r rune) string { return rdPercent(r, "%%%02x") }},
	{"json-u", func(r rune) string { return rdJSONU(r, `\u%04x`) }},
	{"json-u-upper", func(r rune) string { return rdJSONU(r, `\u%04X`) }},
	{"json-short", func(r rune) string {
		if strings.ContainsRune(`"\/`, r) {
			return `\` + string(r)
		}
		return rdJSONU(r, `\u%04x`)
	}},
	{"plus-space", func(r rune) string {
		if r == ' ' {
			return "+"
		}
		return string(r)
	}},
}

// rdWraps encode a whole text once more, as a page quoting an encoded
// value does.
var rdWraps = []func(string) string{
	func(s string) string { return s },
	html.EscapeString,
	func(s string) string {
		var b strings.Builder
		for _, c := range []byte(s) {
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	},
	func(s string) string {
		j, _ := json.Marshal(s)
		return string(j[1 : len(j)-1])
	},
}

// rdEncode writes secret with the i-th character in the encoding plan[i]
// names (cycling through plan), then wraps the result once or twice.
func rdEncode(secret string, plan []byte, wraps uint8) string {
	var b strings.Builder
	i := 0
	for _, r := range secret {
		k := 0
		if len(plan) > 0 {
			k = int(plan[i%len(plan)]) % len(rdEncodings)
		}
		b.WriteString(rdEncodings[k].enc(r))
		i++
	}
	s := b.String()
	s = rdWraps[wraps&3](s)
	return rdWraps[wraps>>2&3](s)
}

// rdSecret is a refresh token with the characters that get escaped; the
// client secret has a space too.
const (
	rdSecret       = "RT/SECRET+91bc=="
	rdClientSecret = "CS&SECRET <55de>"
)

func TestRedactNamedReferences(t *testing.T) {
	for r, n := range rdNamed {
		if got := html.UnescapeString(n); got != string(r) && !(r == ' ' && got == "\u00a0") {
			t.Errorf("html.UnescapeString(%q) = %q, want %q", n, got, string(r))
		}
	}
}

func TestRedactEncodings(t *testing.T) {
	secrets := []string{rdSecret, rdClientSecret}
	type tc struct {
		name, body string
	}
	var tests []tc
	for k, e := range rdEncodings {
		for _, sec := range secrets {
			enc := rdEncode(sec, []byte{byte(k)}, 0)
			tests = append(tests,
				tc{e.name + " html", "<html><body>bad token " + enc + " in request</body></html>"},
				tc{e.name + " description", "bad token " + enc + " in request"},
			)
		}
	}
	tests = append(tests,
		tc{"mixed", "bad token " + rdEncode(rdSecret, []byte{1, 2, 5, 6, 7, 9, 4, 3, 8}, 0) + " in request"},
		tc{"first 12 raw", "bad token " + rdSecret[:12] + rdEncode(rdSecret[12:], []byte{2}, 0) + " in request"},
		tc{"mixed in a quoted URL", "bad token " + rdEncode(rdClientSecret, []byte{6, 1, 10, 7}, 2) + " in request"},
		tc{"json in html", "bad token " + rdEncode(rdSecret, []byte{7}, 1) + " in request"},
		tc{"three deep", "bad token " + rdEncode(rdSecret, []byte{0, 5, 1, 7}, 1|3<<2) + " in request"},
		tc{"no semicolons", "bad token RT&#x2F&#83ECRET&#x2B91bc&#61&#61 in request"},
		tc{"invisible inside", "bad token RT/SEC\u00adRET&shy;+91b%C2%ADc== in request"},
		tc{"legacy reference", "bad token CS&ampSECRET &lt55de&gt in request"},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := excerpt([]byte(tt.body), secrets, 200)
			if leak := rdLeak(out, secrets); leak != "" {
				t.Fatalf("excerpt(%q) = %q, shows %q", tt.body, out, leak)
			}
			// The words around the secret stay.
			for _, w := range []string{"bad token", "in request"} {
				if !strings.Contains(out, w) {
					t.Errorf("excerpt(%q) = %q, want it to keep %q", tt.body, out, w)
				}
			}
		})
	}
}

func TestRedactKeepsWhatIsNotSecret(t *testing.T) {
	tests := []struct {
		name, body string
		secrets    []string
		max        int
		want       string
	}{
		{"no secrets", "a\tb\n\x00c", nil, 20, "a b c"},
		{"nothing echoed", "invalid_grant: the refresh token was used", []string{rdSecret}, 200, "invalid_grant: the refresh token was used"},
		{"echoed", "token RT/SECRET+91bc== was used", []string{rdSecret}, 200, "token [redacted] was used"},
		{"echoed escaped", "token RT&#x2F;SECRET%2B91bc&#61;= was used", []string{rdSecret}, 200, "token [redacted] was used"},
		{"7 characters", "token RT/SECR was cut", []string{rdSecret}, 200, "token RT/SECR was cut"},
		{"8 characters", "token RT/SECRE was cut", []string{rdSecret}, 200, "token [redacted] was cut"},
		{"short secret whole", "client abcde sent", []string{"abcde"}, 200, "client [redacted] sent"},
		{"too short to look for", "client abc sent", []string{"abc"}, 200, "client abc sent"},
		{"cut", strings.Repeat("é", 10), []string{rdSecret}, 5, "éé…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := excerpt([]byte(tt.body), tt.secrets, tt.max); got != tt.want {
				t.Errorf("excerpt(%q) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

// TestRedactEchoedOverHTTP: a token endpoint echoing the refresh token and
// the client secret, in every encoding, in an HTML error page and in a JSON
// error_description; neither err.Error(), the RetrieveError's fields nor
// the Source's log (text and JSON) shows them in any reading.
func TestRedactEchoedOverHTTP(t *testing.T) {
	t.Parallel() // touches nothing shared
	secrets := []string{rdSecret, rdClientSecret}
	type page struct {
		name   string
		status int
		ct     string
		body   func(enc func(string) string) string
	}
	pages := []page{
		{"html", 500, "text/html", func(enc func(string) string) string {
			return "<html><body><pre>refresh_token=" + enc(rdSecret) + "&client_secret=" + enc(rdClientSecret) + "</pre></body></html>"
		}},
		{"description", 400, "application/json", func(enc func(string) string) string {
			d, _ := json.Marshal("token " + enc(rdSecret) + " of " + enc(rdClientSecret) + " refused")
			return `{"error":"invalid_request","error_description":` + string(d) + `}`
		}},
	}
	for k, e := range rdEncodings {
		for _, p := range pages {
			t.Run(e.name+" "+p.name, func(t *testing.T) {
				enc := func(s string) string { return rdEncode(s, []byte{byte(k)}, 0) }
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", p.ct)
					w.WriteHeader(p.status)
					fmt.Fprint(w, p.body(enc))
				}))
				defer srv.Close()
				var logs secBuffer
				cfg := Config{
					TokenURL:     srv.URL,
					ClientID:     "client-1",
					ClientSecret: rdClientSecret,
					MaxRetries:   -1,
					Logger: slog.New(rdTee{
						slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
						slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
					}),
				}
				src := NewSource(cfg, NewMemoryStore(&Token{AccessToken: "old", RefreshToken: rdSecret, Expiry: time.Now().Add(-time.Minute)}))
				_, err := src.Token(t.Context())
				if cerr := src.Close(); cerr != nil {
					t.Errorf("Close: %v", cerr)
				}
				var re *RetrieveError
				if !errors.As(err, &re) {
					t.Fatalf("Token error = %v, want a *RetrieveError", err)
				}
				for what, text := range map[string]string{
					"err.Error()": err.Error(), "%#v": fmt.Sprintf("%#v", err), "Body": re.Body,
					"ErrorDescription": re.ErrorDescription, "log": logs.String(),
				} {
					if leak := rdLeak(text, secrets); leak != "" {
						t.Errorf("%s shows %q: %s", what, leak, text)
					}
				}
				if !strings.Contains(logs.String(), "token endpoint") {
					t.Errorf("log does not report the failure:\n%s", logs.String())
				}
			})
		}
	}
}

// rdTee sends each record to two handlers.
type rdTee [2]slog.Handler

func (h rdTee) Enabled(ctx context.Context, l slog.Level) bool { return h[0].Enabled(ctx, l) }
func (h rdTee) Handle(ctx context.Context, r slog.Record) error {
	return errors.Join(h[0].Handle(ctx, r.Clone()), h[1].Handle(ctx, r.Clone()))
}
func (h rdTee) WithAttrs(as []slog.Attr) slog.Handler {
	return rdTee{h[0].WithAttrs(as), h[1].WithAttrs(as)}
}
func (h rdTee) WithGroup(n string) slog.Handler { return rdTee{h[0].WithGroup(n), h[1].WithGroup(n)} }

// rdSecret2 is a second secret in every fuzzed request.
const rdSecret2 = "CS/SECRET+55de=="

func FuzzRedact(f *testing.F) {
	// The top four bits of wraps make the excerpt long enough to show the
	// secret: 24 + 16*15 bytes.
	for k := range rdEncodings {
		f.Add(rdSecret, "<p>bad token  in request</p>", []byte{byte(k)}, uint8(15<<4))
	}
	f.Add(rdClientSecret, `{"error_description":"bad "}`, []byte{0, 5, 1, 7, 3, 10}, uint8(2|3<<2|15<<4))
	f.Fuzz(func(t *testing.T, secret, text string, plan []byte, wraps uint8) {
		enc := rdEncode(secret, plan, wraps)
		at := len(text) / 2
		body := text[:at] + enc + text[at:]
		max := 24 + int(wraps>>4)*16
		secrets := []string{secret, rdSecret2}
		out := excerpt([]byte(body), secrets, max)
		if leak := rdLeak(out, secrets); leak != "" {
			t.Errorf("excerpt(%q, %q) = %q, shows %q", body, secrets, out, leak)
		}
		if len(out) > max+len("…") && out != withheld {
			t.Errorf("excerpt = %q, %d bytes, want at most %d", out, len(out), max+len("…"))
		}
	})
}

func TestSecretsSourceLog(t *testing.T) {
	for _, h := range secHandlers {
		t.Run(h.name, func(t *testing.T) {
			var buf secBuffer
			now := epNow
			var mu sync.Mutex // guards now
			clock := func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				return now
			}
			advance := func(d time.Duration) {
				mu.Lock()
				now = now.Add(d)
				mu.Unlock()
			}
			const newAT, newRT = "AT-SECRET-NEW-1111", "RT-SECRET-NEW-2222"
			ok := epJSON(200, `{"token_type":"Bearer","expires_in":3600,"access_token":"`+newAT+`","refresh_token":"`+newRT+`","info":{"u":1}}`)
			// Servers can echo only what they were sent: the refresh
			// token being spent and the client secret.
			fail500 := secEcho(500, "text/html", func(b string) string { return "<pre>" + b + "</pre>" })
			grant := secEcho(400, "application/json", func(b string) string {
				return `{"error":"invalid_grant","error_description":"` + strings.ReplaceAll(b, `"`, `'`) + `"}`
			})
			cfg, mt := epConfig(epSeq(ok, fail500, fail500, grant))
			cfg.ClientSecret = secCS
			cfg.MaxRetries = 1
			cfg.Now = clock
			cfg.Logger = slog.New(h.new(&buf))
			var hookErrs []error
			cfg.Hooks.RefreshFinished = func(_ context.Context, _ time.Duration, err error) {
				if err != nil {
					hookErrs = append(hookErrs, err)
				}
			}
			cfg.Hooks.Reauthorize = func(_ context.Context, err error) { hookErrs = append(hookErrs, err) }
			store := NewMemoryStore(&Token{AccessToken: secAT, RefreshToken: secRT, Expiry: epNow.Add(-time.Minute)})
			src := NewSource(cfg, store)

			// A refresh that works.
			tok, err := src.Token(t.Context())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.AccessToken != newAT {
				t.Fatalf("AccessToken = %q, want the refreshed one", tok.AccessToken)
			}
			// The new token expires: the next refresh fails twice with
			// 500, then the server rejects the grant.
			advance(2 * time.Hour)
			if _, err := src.Token(t.Context()); err == nil {
				t.Fatal("Token after 500s = nil error, want one")
			} else {
				secErrCheck(t, err, secAT, secRT, secCS, newAT, newRT)
			}
			if _, err := src.Token(t.Context()); !errors.Is(err, ErrReauthorize) {
				t.Fatalf("Token after invalid_grant = %v, want ErrReauthorize", err)
			} else {
				secErrCheck(t, err, secAT, secRT, secCS, newAT, newRT)
			}
			if err := src.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := mt.GetTotalCallCount(); n != 4 {
				t.Errorf("requests = %d, want 4", n)
			}
			out := buf.String()
			for _, level := range []string{"DEBUG", "WARN", "ERROR"} {
				if !strings.Contains(out, level) {
					t.Errorf("log has no %s line:\n%s", level, out)
				}
			}
			secCheck(t, "Source log", out, secAT, secRT, secCS, newAT, newRT)
			for _, err := range hookErrs {
				secErrCheck(t, err, secAT, secRT, secCS, newAT, newRT)
			}
			if len(hookErrs) == 0 {
				t.Errorf("hooks got no errors, want the failures")
			}
			secCheck(t, "Stats", fmt.Sprintf("%+v", src.Stats()), secAT, secRT, secCS, newAT, newRT)
		})
	}
}
