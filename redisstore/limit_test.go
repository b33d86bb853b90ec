package redisstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/internal/tokenjson"

	"github.com/tokenkit/bearer"
)

// What the Store writes, it reads: a token Load would refuse or read back
// changed is refused before anything is written, and Load has no size
// limit of its own.

func TestSaveRefusesWhatLoadRefuses(t *testing.T) {
	bad := []struct {
		name string
		tok  *bearer.Token
	}{
		{"newline in the access token", &bearer.Token{AccessToken: "at\nX: 1", RefreshToken: secretRT}},
		{"info not JSON", &bearer.Token{AccessToken: secretAT, Info: json.RawMessage(`[1,`)}},
		{"neither token", &bearer.Token{TokenType: "Bearer"}},
		{"refresh token not UTF-8", &bearer.Token{AccessToken: secretAT, RefreshToken: "rt\xfe"}},
		{"expiry past year 9999", &bearer.Token{AccessToken: secretAT, Expiry: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, codec := range []bool{false, true} {
		for _, tt := range bad {
			name := tt.name
			if codec {
				name += " sealed"
			}
			t.Run(name, func(t *testing.T) {
				s := newStore(t)
				if codec {
					s.Codec = aesCodec(t, 7)
				}
				if err := s.Save(t.Context(), testToken()); err != nil {
					t.Fatal(err)
				}
				if err := s.Save(t.Context(), tt.tok); !errors.Is(err, bearer.ErrUnstorable) {
					t.Errorf("Save = %v, want ErrUnstorable", err)
				}
				lease, err := s.Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if err := lease.CompareAndSwap(t.Context(), testToken(), tt.tok); !errors.Is(err, bearer.ErrUnstorable) {
					t.Errorf("CompareAndSwap = %v, want ErrUnstorable", err)
				}
				if err := lease.Unlock(t.Context()); err != nil {
					t.Fatal(err)
				}
				got, err := s.Load(t.Context())
				if err != nil {
					t.Fatalf("Load after the refused saves: %v", err)
				}
				if !sameToken(got, testToken()) {
					t.Errorf("Load = %v, want the token saved before", got)
				}
			})
		}
	}
}

// TestLargeTokensRoundTrip: the answer of issue 14 (an info of 200,000 '<',
// 1.2 MB once escaped) and one of 2 MiB (twice the largest token answer)
// read back as saved.
func TestLargeTokensRoundTrip(t *testing.T) {
	for _, n := range []int{200_000, 2 << 20} {
		tok := testToken()
		tok.Info = json.RawMessage(`"` + strings.Repeat("<", n) + `"`)
		s := newStore(t)
		if err := s.Save(t.Context(), tok); err != nil {
			t.Fatalf("Save of %d bytes of info: %v", n, err)
		}
		got, err := s.Load(t.Context())
		if err != nil {
			t.Fatalf("Load of %d bytes of info: %v", n, err)
		}
		if !sameToken(got, tok) {
			t.Errorf("Load of %d bytes of info: a different token", n)
		}
	}
}

// TestSaveAtRedisValueLimit: Redis refuses a value longer than its
// proto-max-bulk-len (512 MB by default; 1 MiB, its least, here). A token
// at that limit is saved and read back; one past it fails and the stored
// token stays.
func TestSaveAtRedisValueLimit(t *testing.T) {
	const limit = 1 << 20
	srv := ownServer(t, "--save", "", "--proto-max-bulk-len", "1mb")
	s := New(newClient(t, srv.addr), testKey(t))
	infoToken := func(n int) *bearer.Token {
		tok := testToken()
		tok.Info = json.RawMessage(`"` + strings.Repeat("a", n) + `"`)
		return tok
	}
	b, err := tokenjson.Marshal(infoToken(1000))
	if err != nil {
		t.Fatal(err)
	}
	n := 1000 + limit - len(b)
	atLimit, past := infoToken(n), infoToken(n+1)
	if b, _ := tokenjson.Marshal(atLimit); len(b) != limit {
		t.Fatalf("value = %d bytes, want %d", len(b), limit)
	}
	if err := s.Save(t.Context(), atLimit); err != nil {
		t.Fatalf("Save of a value at Redis's limit: %v", err)
	}
	if err := s.Save(t.Context(), past); err == nil {
		t.Fatal("Save of a value past Redis's limit = nil error, want one")
	}
	got, err := s.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !sameToken(got, atLimit) {
		t.Errorf("Load after the refused save: not the token at the limit")
	}
}
