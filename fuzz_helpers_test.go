package bearer

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Helpers shared by the fuzz targets, which sit in the test file of the code
// they fuzz. The targets run their seeds in every `go test`; .ci/fuzz runs
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
