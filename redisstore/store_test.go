package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/internal/tokenjson"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkit/bearer"
)

const (
	secretAT = "at-7f3c1d9e5b2a48c6"
	secretRT = "rt-91d0a6e4c2b8f735"
)

func testToken() *bearer.Token {
	return &bearer.Token{
		AccessToken:   secretAT,
		TokenType:     "Bearer",
		RefreshToken:  secretRT,
		Expiry:        time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		RefreshExpiry: time.Date(2030, 2, 2, 3, 4, 5, 0, time.UTC),
		Info:          json.RawMessage(`{"user":"ada"}`),
	}
}

func aesCodec(t testing.TB, fill byte) bearer.Codec {
	t.Helper()
	c, err := bearer.NewAESGCM(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSaveLoad(t *testing.T) {
	tests := []struct {
		name  string
		tok   *bearer.Token
		codec bool
	}{
		{"full", testToken(), false},
		{"full sealed", testToken(), true},
		{"access only", &bearer.Token{AccessToken: secretAT}, false},
		{"access only sealed", &bearer.Token{AccessToken: secretAT}, true},
		{"refresh only", &bearer.Token{RefreshToken: secretRT}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if tt.codec {
				s.Codec = aesCodec(t, 1)
			}
			ctx := context.Background()
			if err := s.Save(ctx, tt.tok); err != nil {
				t.Fatalf("Save() = %v", err)
			}
			got, err := s.Load(ctx)
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if !sameToken(got, tt.tok) {
				t.Errorf("Load() = %v, want %v", got, tt.tok)
			}
			// Another replica reads what this one wrote.
			got, err = peer(t, s).Load(ctx)
			if err != nil || !sameToken(got, tt.tok) {
				t.Errorf("peer Load() = %v, %v, want %v", got, err, tt.tok)
			}
		})
	}
}

func TestSaveReplaces(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	s.rdb.HSet(ctx, s.key, "token", "junk", "extra", "x")
	next := &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}
	if err := s.Save(ctx, next); err != nil {
		t.Fatalf("Save() = %v", err)
	}
	got, err := s.Load(ctx)
	if err != nil || !sameToken(got, next) {
		t.Fatalf("Load() = %v, %v, want %v", got, err, next)
	}
	if n := s.rdb.HLen(ctx, s.key).Val(); n != 2 {
		t.Errorf("hash has %d fields after Save, want 2", n)
	}
}

func TestSaveNil(t *testing.T) {
	s := newStore(t)
	if err := s.Save(context.Background(), nil); err == nil {
		t.Fatal("Save(nil) = nil, want an error")
	}
}

func TestLoadNoToken(t *testing.T) {
	s := newStore(t)
	_, err := s.Load(context.Background())
	if !errors.Is(err, bearer.ErrNoToken) {
		t.Fatalf("Load() = %v, want an error wrapping ErrNoToken", err)
	}
}

// TestLoadCorrupt checks that a value the Store cannot read is an error,
// never an empty store, and that the error quotes none of the value.
func TestLoadCorrupt(t *testing.T) {
	plain, _ := tokenjson.Marshal(testToken())
	goodFP := fingerprint(testToken())
	tests := []struct {
		name    string
		write   func(ctx context.Context, rdb redis.UniversalClient, key string)
		decrypt bool // the error wraps ErrDecrypt
	}{
		{"not JSON", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			rdb.HSet(ctx, key, "token", "{"+secretRT, "rt", goodFP)
		}, false},
		{"empty token", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			rdb.HSet(ctx, key, "token", `{}`, "rt", goodFP)
		}, false},
		{"no fingerprint", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			rdb.HSet(ctx, key, "token", plain)
		}, false},
		{"no token field", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			rdb.HSet(ctx, key, "rt", goodFP)
		}, false},
		{"wrong fingerprint", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			rdb.HSet(ctx, key, "token", plain, "rt", fingerprint(&bearer.Token{RefreshToken: "other"}))
		}, false},
		{"string key", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			rdb.Set(ctx, key, plain, 0)
		}, false},
		{"sealed, no codec", func(ctx context.Context, rdb redis.UniversalClient, key string) {
			sealed, _ := aesCodec(t, 1).Seal(plain)
			rdb.HSet(ctx, key, "token", sealed, "rt", goodFP)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			tt.write(ctx, s.rdb, s.key)
			got, err := s.Load(ctx)
			if err == nil {
				t.Fatalf("Load() = %v, nil, want an error", got)
			}
			if errors.Is(err, bearer.ErrNoToken) {
				t.Errorf("Load() = %v, must not wrap ErrNoToken", err)
			}
			if !strings.HasPrefix(err.Error(), "bearer/redisstore: ") {
				t.Errorf("Load() error %q lacks the bearer/redisstore prefix", err)
			}
			noSecrets(t, err.Error())
		})
	}
}

func TestCodec(t *testing.T) {
	s := newStore(t)
	s.Codec = aesCodec(t, 1)
	ctx := context.Background()
	tok := testToken()
	if err := s.Save(ctx, tok); err != nil {
		t.Fatalf("Save() = %v", err)
	}
	raw, err := s.rdb.HGetAll(ctx, s.key).Result()
	if err != nil {
		t.Fatal(err)
	}
	for field, v := range raw {
		if strings.Contains(v, secretAT) || strings.Contains(v, secretRT) || strings.Contains(v, "ada") {
			t.Errorf("stored field %q holds a secret in clear", field)
		}
	}

	wrong := peer(t, s)
	wrong.Codec = aesCodec(t, 2)
	_, err = wrong.Load(ctx)
	if !errors.Is(err, bearer.ErrDecrypt) {
		t.Errorf("Load() with the wrong key = %v, want an error wrapping ErrDecrypt", err)
	}
	if errors.Is(err, bearer.ErrNoToken) {
		t.Errorf("Load() with the wrong key = %v, must not wrap ErrNoToken", err)
	}

	// A token written in clear is not accepted by a Store that seals.
	s2 := newStore(t)
	if err := s2.Save(ctx, tok); err != nil {
		t.Fatal(err)
	}
	sealing := peer(t, s2)
	sealing.Codec = aesCodec(t, 1)
	if _, err := sealing.Load(ctx); !errors.Is(err, bearer.ErrDecrypt) {
		t.Errorf("Load() of a clear token with a Codec = %v, want ErrDecrypt", err)
	}
}

// TestSaveClearsRefreshing checks that saving a new token (after the user
// authorized again) drops the record of an interrupted refresh of the old
// one, and that saving the same token keeps it.
func TestSaveClearsRefreshing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	old := testToken()
	if err := s.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	l := lock(t, s)
	if _, err := l.Begin(ctx, old); err != nil {
		t.Fatal(err)
	}
	unlock(t, l)

	if err := s.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := s.rdb.Get(ctx, s.refreshingKey()).Val(); got != fingerprint(old) {
		t.Errorf("after saving the same token, refreshing = %q, want %q", got, fingerprint(old))
	}
	if err := s.Save(ctx, &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-2"}); err != nil {
		t.Fatal(err)
	}
	if n := s.rdb.Exists(ctx, s.refreshingKey()).Val(); n != 0 {
		t.Errorf("after saving a new token, the refreshing record is still there")
	}
}

func TestZeroStore(t *testing.T) {
	ctx := context.Background()
	for _, s := range []*Store{{}, New(nil, "k"), New(redis.NewClient(&redis.Options{}), "")} {
		if _, err := s.Load(ctx); err == nil {
			t.Errorf("%v.Load() = nil error", s)
		}
		if err := s.Save(ctx, testToken()); err == nil {
			t.Errorf("%v.Save() = nil error", s)
		}
		if _, err := s.Lock(ctx); err == nil {
			t.Errorf("%v.Lock() = nil error", s)
		}
		if s.rdb != nil {
			s.rdb.Close()
		}
	}
}

func TestStorePrintsNoSecrets(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Username: "u", Password: "hunter2-secret"})
	defer rdb.Close()
	s := New(rdb, "{app}:token")
	s.Codec = aesCodec(t, 0xAB)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		for _, v := range []any{s, *s} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, "hunter2") || strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "\xab\xab") {
				t.Errorf("Sprintf(%q, %T) = %q, leaks a secret", format, v, out)
			}
			if !strings.Contains(out, "{app}:token") {
				t.Errorf("Sprintf(%q, %T) = %q, want the key", format, v, out)
			}
		}
	}
}

// TestUnreachable checks that every method fails quickly with a clear error
// when nothing listens at the address, and that errors quote no secret.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: "hunter2-secret"})
	defer rdb.Close()
	s := New(rdb, "{app}:token")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A lease as another replica would hold it, to reach its methods.
	l2 := &lease{s: s, owner: "0123"}
	calls := []struct {
		name string
		call func() error
	}{
		{"Load", func() error { _, err := s.Load(ctx); return err }},
		{"Save", func() error { return s.Save(ctx, testToken()) }},
		{"Lock", func() error { _, err := s.Lock(ctx); return err }},
		{"Begin", func() error { _, err := l2.Begin(ctx, testToken()); return err }},
		{"Unlock", func() error { return l2.Unlock(ctx) }},
	}
	// CompareAndSwap alone keeps trying until ctx ends.
	t.Run("CompareAndSwap", func(t *testing.T) {
		// Longer than go-redis's own retries, so that one try fails.
		cctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l2.CompareAndSwap(cctx, testToken(), testToken())
		t.Logf("CompareAndSwap() = %v (after %v)", err, time.Since(start).Round(time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("CompareAndSwap() = %v, want the refused connection and DeadlineExceeded", err)
		}
		noSecrets(t, err.Error())
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("CompareAndSwap() took %v, want it to end with ctx", elapsed)
		}
	})
	t.Run("calls", func(t *testing.T) {
		for _, c := range calls {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				err := c.call()
				elapsed := time.Since(start)
				t.Logf("%s() = %v (after %v)", c.name, err, elapsed.Round(time.Millisecond))
				if err == nil {
					t.Fatalf("%s() = nil, want an error", c.name)
				}
				if !strings.HasPrefix(err.Error(), "bearer/redisstore: ") || !strings.Contains(err.Error(), "refused") {
					t.Errorf("%s() = %q, want a bearer/redisstore error naming the refused connection", c.name, err)
				}
				if errors.Is(err, bearer.ErrNoToken) || errors.Is(err, bearer.ErrConflict) || errors.Is(err, bearer.ErrLockLost) {
					t.Errorf("%s() = %v, must not look like an answer from Redis", c.name, err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("%s() = %q, leaks the password", c.name, err)
				}
				noSecrets(t, err.Error())
				if elapsed > 5*time.Second {
					t.Errorf("%s() took %v, want a quick failure", c.name, elapsed)
				}
			})
		}
	})
}

// TestStalledServer checks that a call returns when ctx ends although the
// server accepted the connection and never answers, and although the
// client ignores context deadlines (go-redis's default).
func TestStalledServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ReadTimeout: 30 * time.Second, MaxRetries: -1})
	t.Cleanup(func() {
		l.Close()
		<-accepted
		close(conns)
		for c := range conns {
			c.Close() // ends the command still waiting for an answer
		}
		rdb.Close()
	})
	s := New(rdb, "{app}:token")

	for _, name := range []string{"Load", "Lock"} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		var err error
		if name == "Load" {
			_, err = s.Load(ctx)
		} else {
			_, err = s.Lock(ctx)
		}
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s() = %v, want an error wrapping context.DeadlineExceeded", name, err)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("%s() took %v, want it to return when ctx ends", name, elapsed)
		}
	}
}

// noSecrets fails the test if s holds a token or a piece of one.
func noSecrets(t testing.TB, s string) {
	t.Helper()
	for _, sec := range []string{secretAT, secretRT, secretAT[3:11], secretRT[3:11]} {
		if strings.Contains(s, sec) {
			t.Errorf("%q holds a secret", s)
		}
	}
}
