package bearertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// sendRaw makes a request and reads the whole answer, returning the body
// read error rather than failing on it.
func sendRaw(t *testing.T, srv *bearertest.Server, req *http.Request) (*http.Response, []byte, error) {
	t.Helper()
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("Do(%s) error: %v", req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res, body, err
}

func refreshRequest(t *testing.T, srv *bearertest.Server, refreshToken string) *http.Request {
	t.Helper()
	return jsonRequest(t, srv, withClient(map[string]string{
		"grant_type":    "refresh_token",
		"refresh_token": refreshToken,
	}))
}

func TestFault(t *testing.T) {
	const page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
	tests := []struct {
		name        string
		fault       bearertest.Fault
		wantStatus  int
		wantType    string // Content-Type prefix
		wantLength  int64  // Content-Length as the client sees it; 0 means len(body)
		wantBody    string // exact body, if set
		wantError   string // OAuth error code in the body, if set
		wantRetry   string // Retry-After
		wantRotated bool
		wantValid   bool // the body is a complete JSON document
	}{
		{name: "zero fault answers normally", wantStatus: 200, wantType: "application/json", wantRotated: true, wantValid: true},
		{name: "short delay answers normally", fault: bearertest.Fault{Delay: time.Millisecond},
			wantStatus: 200, wantType: "application/json", wantRotated: true, wantValid: true},
		{name: "500 JSON", fault: bearertest.Fault{Status: 500},
			wantStatus: 500, wantType: "application/json", wantError: "server_error", wantValid: true},
		{name: "502 HTML page", fault: bearertest.Fault{Status: 502, Body: page},
			wantStatus: 502, wantType: "text/html", wantBody: page},
		{name: "429 Retry-After", fault: bearertest.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond},
			wantStatus: 429, wantType: "application/json", wantError: "temporarily_unavailable", wantRetry: "2", wantValid: true},
		{name: "503 after rotating", fault: bearertest.Fault{Status: 503, Consume: true},
			wantStatus: 503, wantType: "application/json", wantError: "temporarily_unavailable", wantRotated: true, wantValid: true},
		{name: "truncate", fault: bearertest.Fault{Truncate: true},
			wantStatus: 200, wantType: "application/json", wantLength: -1},
		{name: "truncate after rotating", fault: bearertest.Fault{Truncate: true, Consume: true},
			wantStatus: 200, wantType: "application/json", wantLength: -1, wantRotated: true},
		{name: "trickle", fault: bearertest.Fault{Trickle: time.Microsecond, Body: `{"ok":1}`},
			wantStatus: 200, wantType: "text/plain", wantBody: `{"ok":1}`, wantValid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			srv := bearertest.NewServer(bearertest.Config{Now: clk.Now})
			defer srv.Close()
			g := srv.Issue()
			srv.InjectFault(tt.fault)

			res, body, err := sendRaw(t, srv, refreshRequest(t, srv, g.RefreshToken))
			if err != nil {
				t.Fatalf("reading body: %v", err)
			}
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.wantType) {
				t.Errorf("Content-Type = %q, want prefix %q", got, tt.wantType)
			}
			wantLength := tt.wantLength
			if wantLength == 0 {
				wantLength = int64(len(body))
			}
			if res.ContentLength != wantLength {
				t.Errorf("ContentLength = %d, want %d", res.ContentLength, wantLength)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			var doc struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(body, &doc); (err == nil) != tt.wantValid {
				t.Errorf("json.Unmarshal(%q) error = %v, want valid %v", body, err, tt.wantValid)
			}
			if doc.Error != tt.wantError {
				t.Errorf("error = %q, want %q", doc.Error, tt.wantError)
			}
			if got := res.Header.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			head, _ := srv.Head(g.Family)
			if rotated := head.RefreshToken != g.RefreshToken; rotated != tt.wantRotated {
				t.Errorf("rotated = %v, want %v", rotated, tt.wantRotated)
			}
			if tt.fault.Truncate && tt.fault.Consume && !bytes.HasPrefix(head.JSON(), body) {
				t.Errorf("truncated body %q is not a prefix of the real answer", body)
			}
			if st := srv.Stats(); st.Faults != 1 {
				t.Errorf("Stats().Faults = %d, want 1", st.Faults)
			}
			// The fault is spent: the next refresh of the head is normal.
			if r := refresh(t, srv, head.RefreshToken); r.Status != http.StatusOK {
				t.Errorf("refresh after the fault: status %d, want 200", r.Status)
			}
		})
	}
}

func TestFaultOrderAndCount(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	srv.InjectFault(bearertest.Fault{Status: 500, Count: 2})
	srv.InjectFault(bearertest.Fault{Status: 503})
	g := srv.Issue()
	for i, want := range []int{500, 500, 503, 200} {
		res, _, err := sendRaw(t, srv, refreshRequest(t, srv, g.RefreshToken))
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != want {
			t.Errorf("request %d: status %d, want %d", i, res.StatusCode, want)
		}
	}
	if st := srv.Stats(); st.Faults != 3 || st.TokenRequests != 4 || st.Refreshes != 1 {
		t.Errorf("Stats() = %+v, want 3 faults, 4 requests, 1 refresh", st)
	}
}

func TestFaultReset(t *testing.T) {
	for _, consume := range []bool{false, true} {
		srv := bearertest.NewServer(bearertest.Config{})
		defer srv.Close()
		g := srv.Issue()
		srv.InjectFault(bearertest.Fault{Reset: true, Consume: consume})
		res, body, err := sendRaw(t, srv, refreshRequest(t, srv, g.RefreshToken))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Consume %v: body read error = %v, want io.ErrUnexpectedEOF", consume, err)
		}
		if res.StatusCode != http.StatusOK || int64(len(body)) >= res.ContentLength {
			t.Errorf("Consume %v: got %d with %d of %d bytes, want 200 cut short", consume, res.StatusCode, len(body), res.ContentLength)
		}
		if got := srv.Alive(g.RefreshToken); got == consume {
			t.Errorf("Consume %v: Alive(presented token) = %v, want %v", consume, got, !consume)
		}
	}
}

func TestFaultHugeBody(t *testing.T) {
	const size = 50 << 20
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	srv.InjectFault(bearertest.Fault{HugeBody: size, Count: 2})

	res, err := srv.Client().Do(refreshRequest(t, srv, g.RefreshToken))
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 16)
	if _, err := io.ReadFull(res.Body, head); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || n+16 != size || res.ContentLength != size {
		t.Errorf("read %d bytes, err %v, ContentLength %d; want %d bytes", n+16, err, res.ContentLength, size)
	}
	if !bytes.HasPrefix(head, []byte(`{"token_type"`)) {
		t.Errorf("body starts %q, want JSON", head)
	}

	// A client that gives up early must not hold the server up.
	res, err = srv.Client().Do(refreshRequest(t, srv, g.RefreshToken))
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, res.Body, 1<<20)
	res.Body.Close()
	if r := refresh(t, srv, g.RefreshToken); r.Status != http.StatusOK {
		t.Errorf("refresh after huge bodies: status %d, want 200 (unrotated token)", r.Status)
	}
}

// closeWithin fails the test if srv.Close does not return promptly. The
// timeout is a guard against a hang, not a synchroniser.
func closeWithin(t *testing.T, srv *bearertest.Server) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestCloseDuringTrickle(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	g := srv.Issue()
	srv.InjectFault(bearertest.Fault{Trickle: time.Hour})
	res, err := srv.Client().Do(refreshRequest(t, srv, g.RefreshToken))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(res.Body)
		read <- err
	}()
	closeWithin(t, srv)
	if err := <-read; err == nil {
		t.Errorf("reading a trickle cut by Close succeeded, want an error")
	}
}

func TestCloseDuringDelay(t *testing.T) {
	for _, cfg := range []struct {
		name  string
		cfg   bearertest.Config
		fault bearertest.Fault
	}{
		{"fault delay", bearertest.Config{}, bearertest.Fault{Delay: time.Hour, Consume: true}},
		{"latency", bearertest.Config{Latency: time.Hour}, bearertest.Fault{Consume: true, Status: 500}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			clk := newClock()
			cfg.cfg.Now = clk.Now
			srv := bearertest.NewServer(cfg.cfg)
			g := srv.Issue()
			calls := clk.arm()
			srv.InjectFault(cfg.fault)
			done := make(chan error, 1)
			go func() {
				res, err := srv.Client().Do(refreshRequest(t, srv, g.RefreshToken))
				if err == nil {
					res.Body.Close()
				}
				done <- err
			}()
			if cfg.cfg.Latency == 0 {
				<-calls // the request is being processed, the delay is next
			}
			closeWithin(t, srv)
			if err := <-done; err == nil {
				t.Errorf("request cut by Close succeeded, want an error")
			}
		})
	}
}

// TestConsumeLosesAnswer models the field failure: the server rotates the
// token and the client never hears the new one.
func TestConsumeLosesAnswer(t *testing.T) {
	clk := newClock()
	srv := bearertest.NewServer(bearertest.Config{Now: clk.Now})
	defer srv.Close()
	g := srv.Issue()
	calls := clk.arm()
	srv.InjectFault(bearertest.Fault{Delay: time.Hour, Consume: true})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req := refreshRequest(t, srv, g.RefreshToken).WithContext(ctx)
		res, err := srv.Client().Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	<-calls
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Do error = %v, want context.Canceled", err)
	}
	if srv.Alive(g.RefreshToken) {
		t.Errorf("Alive(presented token) = true, want spent")
	}
	if !srv.FamilyAlive(g.Family) {
		t.Errorf("FamilyAlive = false, want the family alive with a head the client never saw")
	}
	if r := refresh(t, srv, g.RefreshToken); r.Error != "invalid_grant" {
		t.Errorf("retry with the presented token = %d %q, want invalid_grant", r.Status, r.Error)
	}
}

// TestDelayWithoutConsume checks that a client giving up during a delay
// leaves the token unspent, whenever the server saw the request.
func TestDelayWithoutConsume(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	srv.InjectFault(bearertest.Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := srv.Client().Do(refreshRequest(t, srv, g.RefreshToken).WithContext(ctx)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do error = %v, want context.DeadlineExceeded", err)
	}
	if r := refresh(t, srv, g.RefreshToken); r.Status != http.StatusOK {
		t.Errorf("refresh after the abandoned one: status %d, want 200", r.Status)
	}
}
