package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tokenkit/bearer/bearertest"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkit/bearer"
)

// --- A save whose refresh token did not rotate is written ------------------

// RFC 6749 §6 lets a server keep the refresh token; bearer.Source then
// copies base.RefreshToken into the new token, so fingerprint(new) ==
// fingerprint(old). casScript's "already saved" shortcut (cur == ARGV[4])
// then returns OK without writing the new access token and without
// clearing the refreshing record.
func TestCASSavesUnrotatedRefreshToken(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	old := &bearer.Token{AccessToken: "at-1", RefreshToken: "rt-same", Expiry: time.Now().Add(-time.Minute)}
	next := &bearer.Token{AccessToken: "at-2", RefreshToken: "rt-same", Expiry: time.Now().Add(time.Hour)}
	if err := s.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	l := lock(t, s)
	if _, err := l.Begin(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := l.CompareAndSwap(ctx, old, next); err != nil {
		t.Fatalf("CompareAndSwap = %v", err)
	}
	unlock(t, l)
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != "at-2" {
		t.Errorf("CompareAndSwap returned nil but the store still holds %q, want at-2 (new token lost)", got.AccessToken)
	}
	if s.rdb.Exists(ctx, s.refreshingKey()).Val() != 0 {
		t.Errorf("refreshing record left behind: the next Begin will report interrupted=true")
	}
	l2 := lock(t, peer(t, s))
	defer unlock(t, l2)
	if interrupted, _ := l2.Begin(ctx, got); interrupted {
		t.Errorf("next holder's Begin reports interrupted=true after a successful refresh")
	}
}

// --- Lock never leaves a lease that nobody holds ---------------------------

// faultProxy forwards TCP to Redis. For the first command containing
// "\r\nNX\r\n" (SetNX) it either drops the reply and cuts the connection
// (mode "cut") or delays the reply by delay (mode "delay").
type faultProxy struct {
	ln     net.Listener
	target string
	mode   string
	delay  time.Duration
	fired  atomic.Bool
	wg     sync.WaitGroup
}

func newFaultProxy(t *testing.T, target, mode string, delay time.Duration) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, mode: mode, delay: delay}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *faultProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	var armed atomic.Bool // the last client->server chunk was the SetNX
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if bytes.Contains(buf[:n], []byte(":lock\r\n")) && p.fired.CompareAndSwap(false, true) {
					armed.Store(true)
				}
				up.Write(buf[:n])
			}
			if err != nil {
				up.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if armed.Swap(false) {
				switch p.mode {
				case "cut":
					return // reply lost: close both ends
				case "delay":
					time.Sleep(p.delay)
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// go-redis retries a command whose reply was lost (MaxRetries 3
// by default). The retried SET NX finds the key set by its own first try,
// returns false, and Lock then polls until its own lease lapses.
func TestLockSurvivesLostReply(t *testing.T) {
	addr := redisAddr(t)
	p := newFaultProxy(t, addr, "cut", 0)
	rdb := redis.NewClient(&redis.Options{Addr: p.ln.Addr().String(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	s := New(rdb, testKey(t))
	s.PollInterval = time.Millisecond // LeaseTTL: the default
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := s.Lock(ctx)
	if err != nil {
		ttl := s.rdb.PTTL(context.Background(), s.lockKey()).Val()
		t.Errorf("Lock() = %v with no other holder; the lease is held by Lock's own lost owner for another %v", err, ttl)
		s.rdb.Del(context.Background(), s.lockKey())
		return
	}
	l.Unlock(context.Background())
}

// ctx ends while SET NX is in flight; Redis executes it, Lock
// reports an error, and the lease (owner known to nobody) blocks the whole
// fleet for LeaseTTL.
func TestLockCtxEndReleasesLease(t *testing.T) {
	addr := redisAddr(t)
	p := newFaultProxy(t, addr, "delay", 300*time.Millisecond)
	rdb := redis.NewClient(&redis.Options{Addr: p.ln.Addr().String(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	s := New(rdb, testKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if l, err := s.Lock(ctx); err == nil {
		l.Unlock(context.Background())
		t.Skip("Lock succeeded")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("Lock() = %v", err)
	}
	// Redis ran the SET NX at once (only its reply is late); the failed
	// Lock must release it, so another replica gets the lease well before
	// LeaseTTL.
	direct := New(newClient(t, addr), s.key)
	direct.PollInterval = time.Millisecond
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if l, err := direct.Lock(ctx2); err != nil {
		t.Errorf("after a failed Lock, another replica cannot lock for 1s: %v (lease PTTL %v)", err,
			direct.rdb.PTTL(context.Background(), direct.lockKey()).Val())
	} else {
		l.Unlock(context.Background())
	}
	direct.rdb.Del(context.Background(), direct.lockKey())
}

// End to end: a server that keeps the refresh token (RFC 6749
// §6). Two replicas share the store; after A refreshed, B finds the old,
// expired access token in the store and refreshes again: one refresh per
// replica per expiry instead of one per fleet, and a restarted replica
// starts from a stale token.
func TestFleetNonRotatingServer(t *testing.T) {
	var refreshes atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := refreshes.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at-%d","token_type":"Bearer","expires_in":100}`, n+1)
	}))
	defer ts.Close()
	clock := bearertest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	a := newStore(t)
	b := peer(t, a)
	ctx := context.Background()
	if err := a.Save(ctx, &bearer.Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-reusable", Expiry: clock.Now().Add(100 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	mk := func(s *Store) *bearer.Source {
		src := bearer.NewSource(bearer.Config{TokenURL: ts.URL, ClientID: "c", ClientSecret: "s", HTTPClient: ts.Client(), Now: clock.Now}, s)
		t.Cleanup(func() { src.Close() })
		return src
	}
	sa, sb := mk(a), mk(b)
	for _, src := range []*bearer.Source{sa, sb} {
		if _, err := src.Token(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(101 * time.Second)
	ta, err := sa.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sb.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := a.Load(ctx)
	t.Logf("A=%s B=%s store=%s refreshes=%d", ta.AccessToken, tb.AccessToken, stored.AccessToken, refreshes.Load())
	if refreshes.Load() != 1 || stored.AccessToken != ta.AccessToken {
		t.Errorf("one expiry cost %d refreshes; store holds %q (A got %q): the refreshed token was never saved",
			refreshes.Load(), stored.AccessToken, ta.AccessToken)
	}
}
