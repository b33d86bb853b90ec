package bearer

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func ccKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestNewAESGCMKeyLength(t *testing.T) {
	tests := []struct {
		n       int
		wantErr bool
	}{
		{0, true},
		{15, true},
		{16, false},
		{24, false},
		{31, true},
		{32, false},
		{33, true},
		{64, true},
	}
	for _, tt := range tests {
		c, err := NewAESGCM(make([]byte, tt.n))
		if (err != nil) != tt.wantErr {
			t.Errorf("NewAESGCM(%d bytes) error = %v, want error %t", tt.n, err, tt.wantErr)
		}
		if err == nil && c == nil {
			t.Errorf("NewAESGCM(%d bytes) = nil Codec and nil error", tt.n)
		}
	}
}

func TestAESGCMSealOpen(t *testing.T) {
	c, err := NewAESGCM(ccKey(1))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"access_token":"AT-CODEC-1"}`)
	a, err := c.Seal(plain)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	b, err := c.Seal(plain)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two Seals of the same plaintext are equal, want fresh nonces")
	}
	if bytes.Contains(a, []byte("AT-CODEC-1")) {
		t.Errorf("sealed data holds the plaintext")
	}
	got, err := c.Open(a)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("Open(Seal(p)) = %q, want %q", got, plain)
	}

	other, err := NewAESGCM(ccKey(2))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte{}, a...)
	flipped[len(flipped)-1] ^= 1
	bad := []struct {
		name string
		c    Codec
		data []byte
	}{
		{"wrong key", other, a},
		{"altered", c, flipped},
		{"truncated", c, a[:len(a)-1]},
		{"magic only", c, a[:len("bearer-aesgcm-v1:")]},
		{"plain", c, plain},
		{"empty", c, nil},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := tt.c.Open(tt.data); !errors.Is(err, ErrDecrypt) {
				t.Errorf("Open = %q, %v; want ErrDecrypt", got, err)
			}
		})
	}
}

func TestFileStoreCodec(t *testing.T) {
	key, err := NewAESGCM(ccKey(7))
	if err != nil {
		t.Fatal(err)
	}
	tok := fsToken()
	fs := NewFileStore(fsPath(t))
	fs.Codec = key
	if err := fs.Save(t.Context(), tok); err != nil {
		t.Fatalf("Save: %v", err)
	}
	data, err := os.ReadFile(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{tok.AccessToken, tok.RefreshToken, "access_token", string(tok.Info)} {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("sealed file holds %q", s)
		}
	}
	got, err := fs.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	fsTokenEqual(t, got, tok)

	sameKey, err := NewAESGCM(ccKey(7))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := NewAESGCM(ccKey(8))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		codec      Codec
		wantErr    bool
		wantDecErr bool
	}{
		{name: "same key, new codec", codec: sameKey},
		{name: "other key", codec: otherKey, wantErr: true, wantDecErr: true},
		{name: "no codec", codec: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := NewFileStore(fs.path)
			other.Codec = tt.codec
			got, err := other.Load(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load = %v, %v; want error %t", got, err, tt.wantErr)
			}
			if err == nil {
				fsTokenEqual(t, got, tok)
				return
			}
			if errors.Is(err, ErrNoToken) {
				t.Errorf("Load error = %v, want one that is not ErrNoToken", err)
			}
			if got := errors.Is(err, ErrDecrypt); got != tt.wantDecErr {
				t.Errorf("errors.Is(%v, ErrDecrypt) = %t, want %t", err, got, tt.wantDecErr)
			}
		})
	}
}

func TestFileStoreCodecOverPlainFile(t *testing.T) {
	path := fsSaved(t, fsToken())
	key, err := NewAESGCM(ccKey(3))
	if err != nil {
		t.Fatal(err)
	}
	fs := NewFileStore(path)
	fs.Codec = key
	_, err = fs.Load(t.Context())
	if !errors.Is(err, ErrDecrypt) {
		t.Errorf("Load of a plain file with a Codec = %v, want ErrDecrypt", err)
	}
	if err != nil && strings.Contains(err.Error(), "AT-FILE-1a2b") {
		t.Errorf("Load error = %q, holds the access token", err)
	}
}

func TestFileStoreCodecSourceWrongKey(t *testing.T) {
	key, _ := NewAESGCM(ccKey(4))
	wrong, _ := NewAESGCM(ccKey(5))
	fs := NewFileStore(fsPath(t))
	fs.Codec = key
	if err := fs.Save(t.Context(), &Token{AccessToken: "at-old", RefreshToken: "rt-old", Expiry: epNow.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, mt := epConfig(epJSON(200, epTokenBody))
	wrongStore := NewFileStore(fs.path)
	wrongStore.Codec = wrong
	src := NewSource(cfg, wrongStore)
	defer src.Close()
	if _, err := src.Token(t.Context()); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Token() with the wrong key = %v, want ErrDecrypt", err)
	}
	if n := mt.GetTotalCallCount(); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
	after, err := os.ReadFile(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("file changed after a failed decrypt, want it byte-identical")
	}
}

func TestMarshalTokenRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		tok  *Token
	}{
		{"every field", fsToken()},
		{"access only", &Token{AccessToken: "at-1"}},
		{"refresh only", &Token{RefreshToken: "rt-1", RefreshExpiry: epNow}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := marshalToken(tt.tok)
			if err != nil {
				t.Fatalf("marshalToken: %v", err)
			}
			got, err := unmarshalToken(b)
			if err != nil {
				t.Fatalf("unmarshalToken: %v", err)
			}
			fsTokenEqual(t, got, tt.tok)
		})
	}
}

func TestMarshalTokenNil(t *testing.T) {
	if b, err := marshalToken(nil); err == nil {
		t.Errorf("marshalToken(nil) = %q, nil; want an error", b)
	}
}

func TestUnmarshalTokenRejects(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"garbage", "garbage AT-UNM-9z RT-UNM-8y"},
		{"truncated", `{"access_token":"AT-UNM-9z","refresh_tok`},
		{"array", `["AT-UNM-9z"]`},
		{"null", `null`},
		{"no tokens", `{"token_type":"Bearer"}`},
		{"wrong type", `{"access_token":42,"refresh_token":"RT-UNM-8y"}`},
		{"bad expiry", `{"access_token":"AT-UNM-9z","expiry":"tomorrow"}`},
		{"CRLF", `{"access_token":"AT-UNM-9z\r\nX: y"}`},
		{"token type CRLF", `{"access_token":"AT-UNM-9z","token_type":"Bearer\r\n"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unmarshalToken([]byte(tt.data))
			if err == nil {
				t.Fatalf("unmarshalToken = %v, want an error", got)
			}
			for _, s := range []string{"AT-UNM-9z", "RT-UNM-8y", "tomorrow"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("unmarshalToken error = %q, quotes the input %q", err, s)
				}
			}
		})
	}
}

// fzUnmarshalErrors are unmarshalToken's errors: they quote none of the input.
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
				t.Errorf("unmarshalToken = %v, %v; want no token with an error", tok, err)
			}
			if !slices.Contains(fzUnmarshalErrors, err.Error()) {
				t.Errorf("unmarshalToken error %q is not one of its fixed messages", err)
			}
			return
		}
		if tok.AccessToken == "" && tok.RefreshToken == "" {
			t.Errorf("unmarshalToken = %v: neither an access nor a refresh token", tok)
		}
		for _, s := range []string{tok.AccessToken, tok.TokenType} {
			if !fzHeaderSafe(s) {
				t.Errorf("unmarshalToken = a token holding %q, not header-safe", s)
			}
		}
		if !vschar(tok.RefreshToken) {
			// It travels in a body, so RFC 6749's VSCHAR, a space included.
			t.Errorf("unmarshalToken = a refresh token %q, not VSCHAR", tok.RefreshToken)
		}
		b, err := marshalToken(tok)
		if err != nil {
			t.Fatalf("marshalToken of an unmarshalled token: %v", err)
		}
		again, err := unmarshalToken(b)
		if err != nil {
			t.Fatalf("unmarshalToken(marshalToken(tok)): %v", err)
		}
		fzSameToken(t, "unmarshalToken(marshalToken(tok))", again, tok)
		if b2, err := marshalToken(again); err != nil || !bytes.Equal(b2, b) {
			t.Errorf("marshalToken after a round trip = %q, %v; want %q", b2, err, b)
		}
	})
}

func TestSecretsStoreErrors(t *testing.T) {
	t.Parallel() // waits on the disk; touches nothing shared
	key, err := NewAESGCM(ccKey(9))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := NewAESGCM(ccKey(10))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		data  string
		codec Codec
	}{
		{"garbage", "garbage " + secAT + " " + secRT, nil},
		{"truncated", `{"version":1,"token":{"access_token":"` + secAT + `","refresh_token":"` + secRT, nil},
		{"wrong type", `{"version":1,"token":{"access_token":"` + secAT + `","refresh_token":["` + secRT + `"]}}`, nil},
		{"unknown field", `{"version":1,"token":{"access_token":"` + secAT + `"},"` + secRT + `":1}`, nil},
		{"bad expiry", `{"version":1,"token":{"access_token":"` + secAT + `","expiry":"` + secRT + `"}}`, nil},
		{"CRLF", `{"version":1,"token":{"access_token":"` + secAT + `\r\n","refresh_token":"` + secRT + `"}}`, nil},
		{"wrong version", `{"version":7,"token":{"access_token":"` + secAT + `","refresh_token":"` + secRT + `"}}`, nil},
		{"plain under codec", `{"version":1,"token":{"access_token":"` + secAT + `","refresh_token":"` + secRT + `"}}`, key},
		{"huge", strings.Repeat(secAT, 1<<17), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
			fs.Codec = tt.codec
			if err := os.WriteFile(fs.path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := fs.Load(t.Context())
			if err == nil {
				t.Fatal("Load = nil error, want one")
			}
			secErrCheck(t, err)

			// Through a Source, with the Logger on.
			var buf secBuffer
			cfg := secConfig()
			cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			src := NewSource(cfg, fs)
			_, err = src.Token(t.Context())
			if cerr := src.Close(); cerr != nil {
				t.Errorf("Close: %v", cerr)
			}
			if err == nil {
				t.Fatal("Source.Token = nil error, want one")
			}
			secErrCheck(t, err)
			secCheck(t, "log", buf.String())
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		fs := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
		fs.Codec = key
		tok := secToken()
		if err := fs.Save(t.Context(), &tok); err != nil {
			t.Fatal(err)
		}
		fs2 := NewFileStore(fs.path)
		fs2.Codec = otherKey
		_, err := fs2.Load(t.Context())
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Load with the wrong key = %v, want ErrDecrypt", err)
		}
		secErrCheck(t, err)
	})
	t.Run("unmarshalToken", func(t *testing.T) {
		for _, data := range []string{secAT, `{"access_token":"` + secAT + `"`, `{"access_token":["` + secAT + `"]}`, `{"expiry":"` + secRT + `","access_token":"x"}`} {
			_, err := unmarshalToken([]byte(data))
			if err == nil {
				t.Fatalf("unmarshalToken(%q) = nil error, want one", data)
			}
			secErrCheck(t, err)
		}
	})
}
