package bearer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fuzz targets below run their seeds in every `go test`; .ci/fuzz runs
// each briefly with -fuzz. Token values in the seeds start with "SECRET" so
// that the targets can tell a leaked secret from an error's own words.

// fzNow is the time of receipt of every fuzzed token answer.
var fzNow = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// fzInfo is an OpenTicket "info" object.
const fzInfo = `{"user":{"id":42,"name":"Zoë"},"scopes":["read","write"],"family":"fam-1"}`

// fzTokenSeeds are token endpoint answers: OpenTicket's JSON and form
// dialects, error answers and the odd ones servers send.
var fzTokenSeeds = []struct {
	body, contentType string
}{
	{`{"token_type":"Bearer","expires_in":259200,"access_token":"SECRETat0123456789","refresh_token":"SECRETrt0123456789","refresh_token_expires_in":31535999,"info":` + fzInfo + `}`, "application/json"},
	{`{"token_type":"bearer","expires_in":"3600","access_token":"SECRETat0123456789"}`, "application/json; charset=utf-8"},
	{`{"access_token":"SECRETat0123456789","expires_in":0}`, ""},
	{`token_type=Bearer&expires_in=259200&access_token=SECRETat0123456789&refresh_token=SECRETrt0123456789&refresh_token_expires_in=31535999&info=%7B%22family%22%3A%22fam-1%22%7D`, "application/x-www-form-urlencoded"},
	{`access_token=SECRETat0123456789&token_type=bearer&expires_in=60`, "text/plain; charset=utf-8"},
	{`access_token=SECRETat0123456789&expires_in=%zz`, "application/x-www-form-urlencoded"},
	{`{"error":"invalid_grant","error_description":"refresh token SECRETrt0123456789 was already used","error_uri":"https://auth.example.test/errors#invalid_grant"}`, "application/json"},
	{`error=invalid_client&error_description=bad+client`, "application/x-www-form-urlencoded"},
	{`{"access_token":"SECRETat0123456789","expires_in":1e400}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":99999999999999999999999999999,"refresh_token_expires_in":"1.5e18"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":-1}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":"-0"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":"NaN"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":0.5}`, "application/json"},
	{`{"access_token":"SECRETat\r\nX-Injected: 1","token_type":"Bearer"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","refresh_token":"SECRETrt 0123456789"}`, "application/json"},
	{"access_token=SECRETat0123456789%0D%0ASet-Cookie%3A+x&token_type=Bearer", "application/x-www-form-urlencoded"},
	{`{"access_token":"SECRETat0123456789","token_type":"mac"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","token_type":"SECRETat0123456789"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","info":"not an object"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","info":null}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","info":[1,{"a":[[[{}]]]}]}`, "application/json"},
	{`{"access_token":42,"refresh_token":"SECRETrt0123456789"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","refresh_token":["SECRETrt0123456789"]}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","info":{"a":{"b":{"c":[1,2,{"d":"SECRETrt0123456789"}]}}}`, "application/json"},
	{`{"access_token":"SECRETat0123456789"`, "application/json"},
	{`["SECRETat0123456789"]`, "application/json"},
	{`null`, "application/json"},
	{`"SECRETat0123456789"`, "application/json"},
	{`<html><body>SECRETat0123456789</body></html>`, "text/html"},
	{`{"ACCESS_TOKEN":"SECRETat0123456789","Token_Type":"BEARER"}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","access_token":"SECRETat9876543210"}`, "application/json"},
	{"{\"access_token\":\"SECRET\xff\xfeat0123\"}", "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":{"SECRETrt0123456789":1}}`, "application/json"},
	{`{"access_token":"SECRETat0123456789","expires_in":"SECRETrt0123456789"}`, "application/json"},
}

// fzVocab holds the words of decodeToken's and token's errors: an input
// secret that happens to be one of them is no leak.
const fzVocab = `malformed form body expires_in: refresh_token_expires_in: not a number of seconds negative ` +
	`field "access_token" "token_type" "refresh_token" "expires_in" "refresh_token_expires_in" "info" "error" "error_description" "error_uri" ` +
	`has the wrong type a lifetime is not a non-negative number not a JSON object no access_token ` +
	`a token holds characters not allowed in a header token_type is not Bearer`

// fzSecretRuns returns the runs of token characters in data that start
// with "SECRET" and are at least 8 bytes long: the secrets seeded into the
// inputs, as the mutator left them.
func fzSecretRuns(data []byte) []string {
	var runs []string
	s := string(data)
	for {
		i := strings.Index(s, "SECRET")
		if i < 0 {
			return runs
		}
		j := i + len("SECRET")
		for j < len(s) && fzTokenChar(s[j]) {
			j++
		}
		if j-i >= 8 {
			runs = append(runs, s[i:j])
		}
		s = s[j:]
	}
}

func fzTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0
}

// fzNoLeak fails t if err's text holds one of secrets (those of 8 bytes or
// more), unless it is part of allowed or of an error's own words.
func fzNoLeak(t *testing.T, what string, err error, secrets []string, allowed string) {
	t.Helper()
	msg := err.Error()
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(msg, s) && !strings.Contains(allowed, s) && !strings.Contains(fzVocab, s) {
			t.Errorf("%s error %q holds the secret %q", what, msg, s)
		}
	}
}

// fzHeaderSafe is headerSafe written again, so that a bug in it is not
// also in the test: no control characters, no spaces, no DEL.
func fzHeaderSafe(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

func FuzzDecodeToken(f *testing.F) {
	for _, s := range fzTokenSeeds {
		f.Add([]byte(s.body), s.contentType)
	}
	f.Fuzz(func(t *testing.T, data []byte, contentType string) {
		secrets := fzSecretRuns(data)
		w, err := decodeToken(data, contentType)
		if err != nil {
			if w != nil {
				t.Errorf("decodeToken = %+v, %v; want no wire token with an error", w, err)
			}
			fzNoLeak(t, "decodeToken", err, secrets, "")
			return
		}
		if w == nil {
			t.Fatal("decodeToken = nil, nil")
		}
		if w.Info != nil && !json.Valid(w.Info) {
			t.Errorf("Info = %q, not valid JSON", w.Info)
		}
		tok, err := w.token(fzNow)
		ptok, perr := ParseTokenResponse(data, contentType, fzNow)
		switch {
		case w.Error != "":
			var re *RetrieveError
			if !errors.As(perr, &re) || ptok != nil {
				t.Errorf("ParseTokenResponse of an error answer = %v, %v; want a *RetrieveError", ptok, perr)
			}
		case (perr == nil) != (err == nil) && len(data) <= maxBody:
			t.Errorf("ParseTokenResponse error %v, token() error %v; want both or neither", perr, err)
		case perr == nil:
			fzSameToken(t, "ParseTokenResponse", ptok, tok)
		default:
			fzNoLeak(t, "ParseTokenResponse", perr, append(fzSecretRuns(data), w.AccessToken, w.RefreshToken), fmt.Sprintf("%.20q", w.TokenType))
		}
		if err != nil {
			if tok != nil {
				t.Errorf("token() = %v, %v; want no token with an error", tok, err)
			}
			// token_type is shown on purpose (%.20q): it is not a secret.
			secrets = append(secrets, w.AccessToken, w.RefreshToken)
			fzNoLeak(t, "token", err, secrets, fmt.Sprintf("%.20q", w.TokenType))
			return
		}
		if tok.AccessToken == "" || !fzHeaderSafe(tok.AccessToken) {
			t.Errorf("AccessToken = %q, want non-empty and header-safe", tok.AccessToken)
		}
		if !vschar(tok.RefreshToken) {
			t.Errorf("RefreshToken = %q, want VSCHAR only", tok.RefreshToken)
		}
		if !strings.EqualFold(tok.TokenType, "bearer") {
			t.Errorf("TokenType = %q, want bearer in any case", tok.TokenType)
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(fzNow) {
			t.Errorf("Expiry = %v, before the time of receipt %v", tok.Expiry, fzNow)
		}
		if !tok.RefreshExpiry.IsZero() && tok.RefreshExpiry.Before(fzNow) {
			t.Errorf("RefreshExpiry = %v, before the time of receipt %v", tok.RefreshExpiry, fzNow)
		}
		// The printed forms depend on the secrets only through whether
		// they are empty.
		other := *tok
		other.AccessToken, other.RefreshToken = "x", ""
		if tok.RefreshToken != "" {
			other.RefreshToken = "x"
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if got, want := fmt.Sprintf(verb, tok), fmt.Sprintf(verb, &other); got != want {
				t.Errorf("Sprintf(%q, tok) = %q; it depends on the secrets (with others: %q)", verb, got, want)
			}
		}
	})
}

// fzKey is the AES-256 key of the sealed file stores.
var fzKey = bytes.Repeat([]byte{0x42}, 32)

// fzSameToken fails t unless got and want are the same token, Info byte
// for byte: it is kept verbatim at rest.
func fzSameToken(t *testing.T, what string, got, want *Token) {
	t.Helper()
	switch {
	case got.AccessToken != want.AccessToken,
		got.TokenType != want.TokenType,
		got.RefreshToken != want.RefreshToken,
		!got.Expiry.Equal(want.Expiry),
		!got.RefreshExpiry.Equal(want.RefreshExpiry),
		(got.Info == nil) != (want.Info == nil),
		!bytes.Equal(got.Info, want.Info):
		t.Errorf("%s: got %+v info %q, want %+v info %q", what, got, got.Info, want, want.Info)
	}
}

// fzFileSeeds are token files: what FileStore writes, and damaged ones.
var fzFileSeeds = []string{
	`{
  "version": 1,
  "token": {
    "access_token": "SECRETat0123456789",
    "token_type": "Bearer",
    "refresh_token": "SECRETrt0123456789",
    "expiry": "2031-03-07T05:06:07Z",
    "refresh_expiry": "2032-03-03T05:06:06.123456789+01:00",
    "info": ` + fzInfo + `
  },
  "saved": "2031-03-04T05:06:07Z"
}
`,
	`{"version":1,"token":{"refresh_token":"SECRETrt0123456789"},"refreshing":"0123456789abcdef0123456789abcdef","saved":"2031-03-04T05:06:07Z"}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","info":{ "a" : [ 1 , "<b>" ] }},"saved":"2031-03-04T05:06:07Z"}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","expiry":"0001-01-01T00:00:00Z","info":null}}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","expiry":"9999-12-31T23:59:59.999999999-23:59"}}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789"}} trailing garbage`,
	`{"version":2,"token":{"access_token":"SECRETat0123456789"}}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","extra":"SECRETrt0123456789"}}`,
	`{"version":1,"token":{"access_token":"SECRETat\r\n0123456789"}}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","token_type":"Bearer x"}}`,
	`{"version":1,"token":{}}`,
	`{"version":1,"token":null}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","expiry":"SECRETrt0123456789"}}`,
	`{"version":1,"token":{"access_token":"SECRETat0123456789","expiry":"2031-03-07T05:06:07Z"`,
	`{"version":1e1000,"token":{"access_token":"SECRETat0123456789"}}`,
	"   \n\t",
	"",
	codecMagic + "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
	codecMagic,
	"[1,2,3]",
}

func FuzzFileStoreLoad(f *testing.F) {
	for _, s := range fzFileSeeds {
		f.Add([]byte(s))
	}
	codec, err := NewAESGCM(fzKey)
	if err != nil {
		f.Fatal(err)
	}
	wrong, err := NewAESGCM(bytes.Repeat([]byte{0x24}, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := t.Context()
		dir := t.TempDir()
		path := filepath.Join(dir, "token.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		secrets := fzSecretRuns(data)

		// The same bytes under a Codec never open: they were not sealed.
		sealedStore := &FileStore{Codec: codec, path: path}
		if tok, err := sealedStore.Load(ctx); err == nil {
			t.Errorf("sealed Load of unsealed bytes = %v, want an error", tok)
		} else {
			if len(bytes.TrimSpace(data)) > 0 && !errors.Is(err, ErrDecrypt) {
				t.Errorf("sealed Load of unsealed bytes: error %v, want ErrDecrypt", err)
			}
			fzNoLeak(t, "sealed Load", err, secrets, path)
		}

		fs := NewFileStore(path)
		tok, err := fs.Load(ctx)
		if err != nil {
			if tok != nil {
				t.Errorf("Load = %v, %v; want no token with an error", tok, err)
			}
			// Only a record without a token (as Begin leaves on an empty
			// store) reads as empty; a corrupt file never does.
			var rec fileRecord
			empty := json.Unmarshal(data, &rec) == nil && rec.Version == 1 && rec.Token == (storedToken{})
			if errors.Is(err, ErrNoToken) && !empty {
				t.Errorf("Load of an existing file: error %v is ErrNoToken; a corrupt file must not read as empty", err)
			}
			fzNoLeak(t, "Load", err, secrets, path)
			return
		}
		if tok.AccessToken == "" && tok.RefreshToken == "" {
			t.Errorf("Load = %v: neither an access nor a refresh token", tok)
		}
		for _, s := range []string{tok.AccessToken, tok.RefreshToken, tok.TokenType} {
			if !fzHeaderSafe(s) {
				t.Errorf("Load = a token holding %q, not header-safe", s)
			}
		}

		if err := fs.Save(ctx, tok); err != nil {
			t.Fatalf("Save of a loaded token: %v", err)
		}
		again, err := fs.Load(ctx)
		if err != nil {
			t.Fatalf("Load after Save: %v", err)
		}
		fzSameToken(t, "Load after Save", again, tok)

		// Sealed, the token round-trips too, and only the right key opens it.
		spath := filepath.Join(dir, "sealed.json")
		ss := &FileStore{Codec: codec, path: spath}
		if err := ss.Save(ctx, tok); err != nil {
			t.Fatalf("sealed Save: %v", err)
		}
		if got, err := ss.Load(ctx); err != nil {
			t.Errorf("sealed Load after Save: %v", err)
		} else {
			fzSameToken(t, "sealed Load after Save", got, tok)
		}
		if got, err := (&FileStore{Codec: wrong, path: spath}).Load(ctx); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Load with the wrong key = %v, %v; want ErrDecrypt", got, err)
		}
		if got, err := NewFileStore(spath).Load(ctx); err == nil {
			t.Errorf("plain Load of a sealed file = %v, want an error", got)
		}
	})
}

// fzUnmarshalErrors are UnmarshalToken's errors: they quote none of the input.
var fzUnmarshalErrors = []string{
	"bearer: stored token is not valid JSON",
	"bearer: stored token has neither an access nor a refresh token",
	"bearer: stored token holds characters not allowed in a header",
	"bearer: stored token's info is not JSON",
}

func FuzzUnmarshalToken(f *testing.F) {
	f.Add([]byte(`{"access_token":"SECRETat0123456789","token_type":"Bearer","refresh_token":"SECRETrt0123456789","expiry":"2031-03-07T05:06:07Z","refresh_expiry":"2032-03-03T05:06:06.5+01:00","info":` + fzInfo + `}`))
	f.Add([]byte(`{"refresh_token":"SECRETrt0123456789"}`))
	f.Add([]byte(`{"access_token":"SECRETat0123456789","info":{ "a" : "<b>" }}`))
	f.Add([]byte(`{"access_token":"SECRETat0123456789","expiry":null,"info":null,"unknown":1}`))
	f.Add([]byte(`{"access_token":"SECRETat 0123456789"}`))
	f.Add([]byte(`{"access_token":"SECRETat0123456789","expiry":"SECRETrt0123456789"}`))
	f.Add([]byte(`{"access_token":"SECRETat0123456789"} {}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{}`))
	for _, s := range fzFileSeeds[:3] {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := unmarshalToken(data)
		if err != nil {
			if tok != nil {
				t.Errorf("UnmarshalToken = %v, %v; want no token with an error", tok, err)
			}
			if !slices.Contains(fzUnmarshalErrors, err.Error()) {
				t.Errorf("UnmarshalToken error %q is not one of its fixed messages", err)
			}
			return
		}
		if tok.AccessToken == "" && tok.RefreshToken == "" {
			t.Errorf("UnmarshalToken = %v: neither an access nor a refresh token", tok)
		}
		for _, s := range []string{tok.AccessToken, tok.RefreshToken, tok.TokenType} {
			if !fzHeaderSafe(s) {
				t.Errorf("UnmarshalToken = a token holding %q, not header-safe", s)
			}
		}
		b, err := marshalToken(tok)
		if err != nil {
			t.Fatalf("MarshalToken of an unmarshalled token: %v", err)
		}
		again, err := unmarshalToken(b)
		if err != nil {
			t.Fatalf("unmarshalToken(marshalToken(tok)): %v", err)
		}
		fzSameToken(t, "unmarshalToken(marshalToken(tok))", again, tok)
		if b2, err := marshalToken(again); err != nil || !bytes.Equal(b2, b) {
			t.Errorf("MarshalToken after a round trip = %q, %v; want %q", b2, err, b)
		}
	})
}

// Request secrets of FuzzRetrieve: none may reach an error.
const (
	fzClientSecret = "SECRETclient-0123456789"
	fzCode         = "SECRETcode-0123456789"
	fzVerifier     = "SECRETverifier-0123456789-abcdefghijklmnopqrstu"
	fzRefresh      = "SECRETrefresh-0123456789"
)

// fzBody is a response body that counts the bytes read from it and its
// Close calls. It serves data, then fails with errAfter if set, or repeats
// data forever if endless (up to a sanity bound, so that a bug shows as a
// failed assertion, not a hang).
type fzBody struct {
	data     []byte
	errAfter error
	endless  bool

	off    int
	n      int64
	closed int
}

var errFzRead = errors.New("fz: connection reset")

const fzEndlessBound = 64 << 20

func (b *fzBody) Read(p []byte) (int, error) {
	if b.endless {
		if b.n >= fzEndlessBound {
			return 0, errors.New("fz: endless body read too far")
		}
		data := b.data
		if len(data) == 0 {
			data = []byte("x")
		}
		n := 0
		for n < len(p) {
			c := copy(p[n:], data[b.off%len(data):])
			b.off += c
			n += c
		}
		b.n += int64(n)
		return n, nil
	}
	if b.off >= len(b.data) {
		if b.errAfter != nil {
			return 0, b.errAfter
		}
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	b.n += int64(n)
	return n, nil
}

func (b *fzBody) Close() error {
	b.closed++
	return nil
}

// fzRoundTripper answers every request with respond, in memory.
type fzRoundTripper struct {
	respond func(req *http.Request) (*http.Response, error)
}

func (rt fzRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return rt.respond(req)
}

// fzStatus clamps a fuzzed status to 100..599.
func fzStatus(s int) int {
	if s >= 100 && s <= 599 {
		return s
	}
	s %= 500
	if s < 0 {
		s = -s
	}
	return 100 + s
}

// fzRetrieveSeeds are token endpoint answers for FuzzRetrieve: status,
// Content-Type, body, mode (see FuzzRetrieve).
var fzRetrieveSeeds = []struct {
	status int
	ct     string
	body   string
	mode   uint8
}{
	{200, "application/json", fzTokenSeeds[0].body, 0},
	{200, "application/json", fzTokenSeeds[0].body, 1},
	{200, "application/x-www-form-urlencoded", fzTokenSeeds[3].body, 2 | 4},
	{200, "application/json", `{"access_token":"SECRETat0123456789","token_type":"mac"}`, 1},
	{400, "application/json", `{"error":"invalid_grant","error_description":"refresh token SECRETrefresh-0123456789 was already used"}`, 1},
	{401, "application/json", `{"error":"invalid_client","error_description":"client_secret=SECRETclient-0123456789 is wrong"}`, 8},
	{500, "text/html", `<html><body><h1>500</h1><pre>client_secret=SECRETclient-0123456789&code=SECRETcode-0123456789&code_verifier=SECRETverifier-0123456789</pre></body></html>`, 0},
	{502, "text/html", "<pre>grant: SECRETrefresh-0123456789\n\tclient: SECRETclient-0123456789</pre>", 1 | 4},
	{429, "application/json", `{"error":"slow_down"}`, 2},
	{503, "", "", 0},
	{200, "application/json", `{"access_token":"SECRETat0123456789","expires_in":259200,`, 16},
	{200, "application/json", `{"access_token":"`, 32},
	{500, "text/plain", `oops `, 32},
	{302, "text/html", `<a href="https://evil.example/">moved</a>`, 0},
	{200, "application/json", `{"error":"invalid_grant","error_description":"SECRETrefresh-0123456789"}`, 1},
	{200, "text/plain", `access_token=SECRETat0123456789&expires_in=-5`, 1},
	{100, "application/json", `{}`, 0},
	{599, "application/json", `{"error":"` + strings.Repeat("e", 300) + `"}`, 0},
}

// FuzzRetrieve drives a token request against an in-memory endpoint whose
// answer is fuzzed. mode: bits 0-1 the grant (authorization_code,
// refresh_token, client_credentials), bit 2 form-encoded requests, bit 3
// HTTP Basic client authentication, bit 4 a body that fails after its
// bytes, bit 5 a body that repeats forever.
func FuzzRetrieve(f *testing.F) {
	for _, s := range fzRetrieveSeeds {
		f.Add(s.status, s.ct, []byte(s.body), s.mode)
	}
	f.Fuzz(func(t *testing.T, status int, contentType string, data []byte, mode uint8) {
		status = fzStatus(status)
		body := &fzBody{data: data, endless: mode&32 != 0}
		if mode&16 != 0 {
			body.errAfter = errFzRead
		}
		calls := 0
		cfg := Config{
			TokenURL:     "https://auth.example.test/tokens",
			ClientID:     "client-1",
			ClientSecret: fzClientSecret,
			MaxRetries:   -1,
			Now:          func() time.Time { return fzNow },
			HTTPClient: &http.Client{Transport: fzRoundTripper{func(req *http.Request) (*http.Response, error) {
				calls++
				if req.Body != nil {
					io.Copy(io.Discard, req.Body)
					req.Body.Close()
				}
				h := http.Header{}
				if contentType != "" {
					h.Set("Content-Type", contentType)
				}
				return &http.Response{
					Status:        fmt.Sprintf("%d fuzzed", status),
					StatusCode:    status,
					Proto:         "HTTP/1.1",
					ProtoMajor:    1,
					ProtoMinor:    1,
					Header:        h,
					Body:          body,
					ContentLength: -1,
					Request:       req,
				}, nil
			}}},
		}
		if mode&4 != 0 {
			cfg.Encoding = Form
		}
		if mode&8 != 0 {
			cfg.AuthStyle = AuthBasic
		}
		secrets := []string{fzClientSecret}
		var tok *Token
		var err error
		switch mode & 3 {
		case 0:
			secrets = append(secrets, fzCode, fzVerifier)
			tok, err = cfg.Exchange(t.Context(), fzCode, "https://app.example.test/callback", fzVerifier)
		case 1:
			secrets = append(secrets, fzRefresh)
			tok, err = cfg.refreshGrant(t.Context(), fzRefresh)
		default:
			cfg.Scopes = []string{"read", "write"}
			tok, err = cfg.clientCredentialsGrant(t.Context())
		}

		if calls != 1 {
			t.Errorf("requests sent = %d, want 1 (MaxRetries -1)", calls)
		}
		if body.n > maxBody+1 {
			t.Errorf("bytes read from the answer = %d, want at most %d", body.n, maxBody+1)
		}
		if body.closed != 1 {
			t.Errorf("answer body closed %d times, want 1", body.closed)
		}
		if tok == nil && err == nil {
			t.Fatalf("retrieve = nil, nil; want a token or an error")
		}
		if tok != nil && err != nil && (tok.AccessToken != "" || tok.RefreshToken == "" || status/100 != 2) {
			// With an error, a token only carries the refresh token
			// that a successful but unusable answer rotated to.
			t.Fatalf("retrieve = %v, %v; want only a salvaged refresh token beside an error", tok, err)
		}
		if err != nil {
			var re *RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("retrieve error %v is a %T, want a *RetrieveError", err, err)
			}
			if re.StatusCode != status {
				t.Errorf("RetrieveError.StatusCode = %d, want %d", re.StatusCode, status)
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("retrieve error %q holds the request secret %q", msg, s)
				}
			}
			for _, s := range []string{re.ErrorCode, re.ErrorDescription, re.ErrorURI, re.Body} {
				for _, sec := range secrets {
					if strings.Contains(s, sec) {
						t.Errorf("RetrieveError field %q holds the request secret %q", s, sec)
					}
				}
			}
			if status >= 200 && status < 300 {
				// A successful answer carries tokens: no excerpt of it.
				if re.Body != "" {
					t.Errorf("RetrieveError.Body = %q for a %d answer, want none", re.Body, status)
				}
				allowed := re.ErrorCode + "\x00" + re.ErrorDescription + "\x00" + re.ErrorURI
				if w, derr := decodeToken(data, contentType); derr == nil {
					allowed += "\x00" + fmt.Sprintf("%.20q", w.TokenType)
				}
				fzNoLeak(t, "retrieve", err, fzSecretRuns(data), allowed)
			}
			return
		}
		if status < 200 || status >= 300 {
			t.Errorf("retrieve = a token from a %d answer", status)
		}
		if tok.AccessToken == "" || !fzHeaderSafe(tok.AccessToken) || !fzHeaderSafe(tok.RefreshToken) {
			t.Errorf("retrieve = token %q refresh %q, want a non-empty header-safe access token", tok.AccessToken, tok.RefreshToken)
		}
		if !strings.EqualFold(tok.TokenType, "bearer") {
			t.Errorf("TokenType = %q, want bearer in any case", tok.TokenType)
		}
		if !tok.Expiry.IsZero() && tok.Expiry.Before(fzNow) {
			t.Errorf("Expiry = %v, before the time of receipt %v", tok.Expiry, fzNow)
		}
	})
}

// fzReqBody is a request body that counts its Close calls.
type fzReqBody struct {
	io.Reader
	closed int
}

func (b *fzReqBody) Close() error {
	b.closed++
	return nil
}

// fzSource is a TokenSource with Refresh (unless noRefresh is set in the
// wrapper below) whose behaviour the fuzzer picks.
type fzSource struct {
	kind        int // see FuzzTransport
	tok, next   *Token
	refreshes   int
	badRejected bool // Refresh was not given the token sent
}

var (
	errFzToken   = errors.New("fz: no token for you")
	errFzRefresh = errors.New("fz: refresh failed")
	errFzBase    = errors.New("fz: base transport failed")
)

func (s *fzSource) Token(ctx context.Context) (*Token, error) {
	switch s.kind {
	case 5:
		return nil, errFzToken
	case 6:
		return &Token{}, nil
	}
	return s.tok, nil
}

func (s *fzSource) Refresh(ctx context.Context, rejected *Token) (*Token, error) {
	s.refreshes++
	if rejected != s.tok {
		s.badRejected = true
	}
	switch s.kind {
	case 1:
		return s.tok, nil
	case 2:
		return nil, errFzRefresh
	case 3:
		return nil, nil
	}
	return s.next, nil
}

// fzTokenOnly hides Refresh.
type fzTokenOnly struct{ src *fzSource }

func (s fzTokenOnly) Token(ctx context.Context) (*Token, error) { return s.src.Token(ctx) }

// fzHeader parses fuzzed header lines loosely: "Key: value" per line.
func fzHeader(s string) http.Header {
	h := http.Header{}
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return h
}

// fzRequestSnapshot is what RoundTrip must leave alone in the caller's request.
type fzRequestSnapshot struct {
	method, url, host string
	header            http.Header
	body              io.ReadCloser
	getBody           bool
	contentLength     int64
	response          *http.Response
}

func fzSnapshot(req *http.Request) fzRequestSnapshot {
	return fzRequestSnapshot{
		method: req.Method, url: req.URL.String(), host: req.Host,
		header: req.Header.Clone(), body: req.Body, getBody: req.GetBody != nil,
		contentLength: req.ContentLength, response: req.Response,
	}
}

func (s fzRequestSnapshot) equal(o fzRequestSnapshot) bool {
	return s.method == o.method && s.url == o.url && s.host == o.host &&
		fmt.Sprint(s.header) == fmt.Sprint(o.header) && s.body == o.body &&
		s.getBody == o.getBody && s.contentLength == o.contentLength && s.response == o.response
}

// fzAuthorization returns the Authorization values of h, in any spelling.
func fzAuthorization(h http.Header) []string {
	var vs []string
	for k, v := range h {
		if strings.EqualFold(k, "Authorization") {
			vs = append(vs, v...)
		}
	}
	return vs
}

// fzTransportSeeds are protected API answers: status, header lines, body,
// second status, flags (see FuzzTransport).
var fzTransportSeeds = []struct {
	status  int
	header  string
	body    string
	status2 int
	flags   uint16
}{
	{200, "Content-Type: application/json", `{"ok":true}`, 200, 0},
	{401, "WWW-Authenticate: Bearer error=\"invalid_token\"", `{"error":"invalid_token"}`, 200, 0},
	{401, "WWW-Authenticate: Bearer error=\"invalid_token\"", `{"error":"invalid_token"}`, 401, 2 << 3},
	{401, "WWW-Authenticate: Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"write\"", ``, 200, 0},
	{401, "WWW-Authenticate: Bearer x_error=\"insufficient_scope\"\r\nWWW-Authenticate: Basic realm=x", ``, 200, 0},
	{401, "WWW-Authenticate: Bearer error = insufficient_scopes", `denied`, 200, 1},
	{401, "", `denied`, 200, 2},
	{401, "", `denied`, 200, 3},
	{401, "", `denied`, 200, 4},
	{401, "", `denied`, 200, 3 << 3},
	{401, "Content-Length: 100000000", strings.Repeat("x", 9000), 200, 2<<5 | 1<<13},
	{401, "", strings.Repeat("x", 5000), 200, 1 << 5},
	{401, "", `endless`, 200, 2 << 5},
	{500, "Retry-After: 1", `oops`, 200, 1 << 7},
	{200, "", ``, 200, 5},
	{200, "", ``, 200, 6},
	{302, "Location: https://evil.example/", ``, 200, 1<<9 | 1<<10},
	{200, "", ``, 200, 1<<8 | 1<<10},
	{401, "", ``, 200, 1<<9 | 1<<12},
	{200, "", ``, 200, 1 << 11},
	{401, "", ``, 200, 1<<11 | 1<<9},
	{401, "", ``, 200, 1 << 10},
	{302, "Location: https://evil.example/", ``, 200, 1 << 9},
}

// FuzzTransport sends a request through Transport to an in-memory Base
// whose answers are fuzzed. flags:
//
//	bits 0-2   source: 0 and 7 Refresh rotates, 1 Refresh returns the same
//	           token, 2 Refresh fails, 3 Refresh returns nil, 4 no Refresh,
//	           5 Token fails, 6 Token returns an empty token
//	bits 3-4   request body: none, http.NoBody, replayable, not replayable
//	bits 5-6   answer body: plain, failing after its bytes, endless, nil
//	bit 7      Base fails the first request
//	bit 8      the request is a redirect from the same origin
//	bit 9      the request is a redirect from another origin
//	bit 10     the caller set an Authorization header
//	bit 11     plain http to a host that is not loopback
//	bit 12     AllowedHosts lists the request's host
//	bit 13     the answer declares its Content-Length from the header
func FuzzTransport(f *testing.F) {
	for _, s := range fzTransportSeeds {
		f.Add(s.status, s.header, []byte(s.body), s.status2, s.flags)
	}
	f.Fuzz(func(t *testing.T, status int, header string, data []byte, status2 int, flags uint16) {
		statuses := [2]int{fzStatus(status), fzStatus(status2)}
		respHeader := fzHeader(header)

		src := &fzSource{
			kind: int(flags & 7),
			tok:  &Token{AccessToken: "SECRETtok-1", TokenType: "Bearer"},
			next: &Token{AccessToken: "SECRETtok-2"},
		}
		var ts TokenSource = src
		hasRefresh := src.kind != 4
		if !hasRefresh {
			ts = fzTokenOnly{src}
		}

		var bodies []*fzBody // answers' bodies, by call
		var resps []*http.Response
		var sent []*http.Request
		base := fzRoundTripper{func(req *http.Request) (*http.Response, error) {
			sent = append(sent, req)
			if req.Body != nil {
				io.Copy(io.Discard, req.Body)
				req.Body.Close()
			}
			if flags&(1<<7) != 0 && len(sent) == 1 {
				return nil, errFzBase
			}
			b := &fzBody{data: data}
			switch flags >> 5 & 3 {
			case 1:
				b.errAfter = errFzRead
			case 2:
				b.endless = true
			}
			resp := &http.Response{
				StatusCode:    statuses[min(len(sent), 2)-1],
				Proto:         "HTTP/1.1",
				ProtoMajor:    1,
				ProtoMinor:    1,
				Header:        respHeader.Clone(),
				Body:          b,
				ContentLength: int64(len(data)),
				Request:       req,
			}
			if b.endless || b.errAfter != nil {
				resp.ContentLength = -1
			}
			if flags&(1<<13) != 0 {
				resp.ContentLength = -1
				fmt.Sscan(respHeader.Get("Content-Length"), &resp.ContentLength)
			}
			if flags>>5&3 == 3 {
				resp.Body = nil
			}
			bodies = append(bodies, b)
			resps = append(resps, resp)
			return resp, nil
		}}

		scheme := "https"
		if flags&(1<<11) != 0 {
			scheme = "http"
		}
		tr := &Transport{Source: ts, Base: base}
		if flags&(1<<12) != 0 {
			tr.AllowedHosts = []string{"api.example.test"}
		}

		var reqBody *fzReqBody
		var getBodies []*fzReqBody
		var body io.ReadCloser
		payload := []byte(`{"order":1}`)
		switch flags >> 3 & 3 {
		case 1:
			body = http.NoBody
		case 2, 3:
			reqBody = &fzReqBody{Reader: bytes.NewReader(payload)}
			body = reqBody
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, scheme+"://api.example.test/v1/orders?x=1", body)
		if err != nil {
			t.Fatal(err)
		}
		req.GetBody = nil
		if flags>>3&3 == 2 {
			req.GetBody = func() (io.ReadCloser, error) {
				b := &fzReqBody{Reader: bytes.NewReader(payload)}
				getBodies = append(getBodies, b)
				return b, nil
			}
		}
		req.Header.Set("X-Request-Id", "r-1")
		if flags&(1<<10) != 0 {
			req.Header["authorization"] = []string{"Basic caller"}
		}
		crossOrigin := false
		switch {
		case flags&(1<<9) != 0:
			prev, _ := http.NewRequest(http.MethodGet, "https://login.example.test/start", nil)
			req.Response = &http.Response{StatusCode: http.StatusFound, Request: prev}
			crossOrigin = tr.AllowedHosts == nil
		case flags&(1<<8) != 0:
			prev, _ := http.NewRequest(http.MethodGet, scheme+"://api.example.test/v1/start", nil)
			req.Response = &http.Response{StatusCode: http.StatusFound, Request: prev}
		}
		before := fzSnapshot(req)

		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := tr.RoundTrip(req)
			done <- result{resp, err}
		}()
		var res result
		timer := time.NewTimer(10 * time.Second)
		select {
		case res = <-done:
			timer.Stop()
		case <-timer.C:
			t.Fatal("RoundTrip still running after 10 s")
		}
		resp, err := res.resp, res.err

		if !fzSnapshot(req).equal(before) {
			t.Errorf("RoundTrip changed the caller's request: %+v, was %+v", fzSnapshot(req), before)
		}
		if len(sent) > 2 {
			t.Errorf("Base called %d times, want at most 2", len(sent))
		}
		if reqBody != nil && reqBody.closed == 0 {
			t.Error("the request body was never closed")
		}
		for i, b := range getBodies {
			if b.closed == 0 {
				t.Errorf("the request body from GetBody call %d was never closed", i+1)
			}
		}
		if (resp == nil) == (err == nil) {
			t.Errorf("RoundTrip = %v, %v; want an answer or an error", resp, err)
		}
		if resp != nil && resp.Request != req {
			t.Errorf("the answer's Request is %p, want the caller's %p", resp.Request, req)
		}

		// Which requests carried which token.
		insecure := scheme == "http" && !crossOrigin
		for i, r := range sent {
			auth := fzAuthorization(r.Header)
			var want []string
			switch {
			case crossOrigin:
			case i == 0:
				want = []string{"Bearer SECRETtok-1"}
			default:
				want = []string{"Bearer SECRETtok-2"}
			}
			if !slices.Equal(auth, want) {
				t.Errorf("request %d sent Authorization %q, want %q", i+1, auth, want)
			}
			if r.URL.String() != req.URL.String() {
				t.Errorf("request %d went to %v, want %v", i+1, r.URL, req.URL)
			}
		}
		switch {
		case insecure:
			if !errors.Is(err, ErrInsecure) || len(sent) != 0 {
				t.Errorf("plain http: RoundTrip error %v after %d requests, want ErrInsecure before any", err, len(sent))
			}
		case crossOrigin:
			if len(sent) != 1 {
				t.Errorf("cross-origin hop: %d requests, want 1", len(sent))
			}
		case src.kind == 5 || src.kind == 6:
			if err == nil || len(sent) != 0 {
				t.Errorf("no token: RoundTrip error %v after %d requests, want an error before any", err, len(sent))
			}
			if src.kind == 5 && !errors.Is(err, errFzToken) {
				t.Errorf("RoundTrip error %v does not wrap the source's error", err)
			}
		}
		if len(sent) == 2 {
			if statuses[0] != http.StatusUnauthorized || !hasRefresh || flags>>3&3 == 3 || flags&(1<<7) != 0 {
				t.Errorf("retried a %d answer (flags %#x)", statuses[0], flags)
			}
			if src.refreshes != 1 {
				t.Errorf("Refresh called %d times before the retry, want 1", src.refreshes)
			}
		}
		if flags&(1<<7) != 0 && len(sent) == 1 && !errors.Is(err, errFzBase) {
			t.Errorf("RoundTrip error %v, want the Base's error", err)
		}
		if src.badRejected {
			t.Error("Refresh was not given the token the server rejected")
		}
		if src.refreshes > 0 && (len(resps) == 0 || resps[0].StatusCode != http.StatusUnauthorized) {
			t.Errorf("Refresh called without a 401")
		}
		if src.kind == 2 && src.refreshes > 0 && !errors.Is(err, errFzRefresh) {
			t.Errorf("RoundTrip error %v does not wrap Refresh's error", err)
		}

		// The answer returned is the last one, untouched; the others were
		// closed after a bounded read.
		for i, r := range resps {
			b := bodies[i]
			if r == resp {
				if i != len(resps)-1 {
					t.Errorf("RoundTrip returned answer %d of %d", i+1, len(resps))
				}
				if (b.n != 0 || b.closed != 0) && r.Body == io.ReadCloser(b) {
					t.Errorf("the answer returned was read (%d bytes) or closed (%d times)", b.n, b.closed)
				}
				if r.Body != nil && r.Body != io.ReadCloser(b) && !b.endless {
					// Buffered to free the connection while Refresh ran:
					// the caller must still read the whole answer.
					if b.n > 64<<10+1 {
						t.Errorf("buffered %d bytes of the answer returned, want at most 64 KiB", b.n)
					}
					got, err := io.ReadAll(r.Body)
					if b.errAfter == nil && (err != nil || !bytes.Equal(got, b.data)) {
						t.Errorf("the answer returned reads %d bytes (%v), want its %d bytes intact", len(got), err, len(b.data))
					}
				}
				continue
			}
			if r.Body != nil && b.closed == 0 {
				t.Errorf("answer %d (status %d) was dropped without closing its body", i+1, r.StatusCode)
			}
			if b.n > 64<<10 {
				t.Errorf("read %d bytes of answer %d (status %d), want at most 64 KiB", b.n, i+1, r.StatusCode)
			}
		}
		if resp != nil && !slices.Contains(resps, resp) {
			t.Errorf("RoundTrip returned an answer Base never gave")
		}
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
	})
}
