package bearertest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkit/bearer/bearertest"
)

// clock is a fake clock for Config.Now. Once armed, every reading is
// signalled on calls, which tells a test that the server is processing.
type clock struct {
	mu    sync.Mutex
	t     time.Time
	calls chan struct{}
}

func (c *clock) arm() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = make(chan struct{}, 1)
	return c.calls
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case c.calls <- struct{}{}:
	default:
	}
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reply is a token endpoint or API answer, decoded where it is JSON.
type reply struct {
	Status int
	Header http.Header
	Body   []byte

	TokenType             string            `json:"token_type"`
	ExpiresIn             int64             `json:"expires_in"`
	AccessToken           string            `json:"access_token"`
	RefreshToken          string            `json:"refresh_token"`
	RefreshTokenExpiresIn int64             `json:"refresh_token_expires_in"`
	Info                  map[string]string `json:"info"`
	Error                 string            `json:"error"`
	ErrorDescription      string            `json:"error_description"`
}

func send(t *testing.T, srv *bearertest.Server, req *http.Request) reply {
	t.Helper()
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("Do(%s %s) error: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading %s body: %v", req.URL.Path, err)
	}
	r := reply{Status: res.StatusCode, Header: res.Header, Body: body}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt == "application/json" {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("decoding %s answer %q: %v", req.URL.Path, body, err)
		}
	}
	return r
}

func jsonRequest(t *testing.T, srv *bearertest.Server, fields map[string]string) *http.Request {
	t.Helper()
	body, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, srv.TokenURL(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func formRequest(t *testing.T, srv *bearertest.Server, v url.Values) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

// withClient adds the default client credentials to fields.
func withClient(fields map[string]string) map[string]string {
	fields["client_id"] = bearertest.DefaultClientID
	fields["client_secret"] = bearertest.DefaultClientSecret
	return fields
}

func refresh(t *testing.T, srv *bearertest.Server, refreshToken string) reply {
	t.Helper()
	return send(t, srv, jsonRequest(t, srv, withClient(map[string]string{
		"grant_type":    "refresh_token",
		"refresh_token": refreshToken,
	})))
}

// callAPI makes a GET to the protected API with the given access token.
func callAPI(t *testing.T, srv *bearertest.Server, accessToken string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.APIURL()+"x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return send(t, srv, req)
}

func TestRefreshRotates(t *testing.T) {
	clk := newClock()
	srv := bearertest.NewServer(bearertest.Config{Now: clk.Now})
	defer srv.Close()
	g := srv.Issue()

	r := refresh(t, srv, g.RefreshToken)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh status = %d, want 200; body %s", r.Status, r.Body)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"token_type", r.TokenType, "Bearer"},
		{"expires_in", r.ExpiresIn, int64(3600)},
		{"refresh_token_expires_in", r.RefreshTokenExpiresIn, int64(86400)},
		{"info.family", r.Info["family"], g.Family},
		{"access_token prefix", strings.HasPrefix(r.AccessToken, "at_"), true},
		{"refresh_token prefix", strings.HasPrefix(r.RefreshToken, "rt_"), true},
		{"new refresh token differs", r.RefreshToken != g.RefreshToken, true},
		{"new access token differs", r.AccessToken != g.AccessToken, true},
		{"Cache-Control", r.Header.Get("Cache-Control"), "no-store"},
		{"Alive(old)", srv.Alive(g.RefreshToken), false},
		{"Alive(new)", srv.Alive(r.RefreshToken), true},
		{"FamilyAlive", srv.FamilyAlive(g.Family), true},
		{"Stats().Refreshes", srv.Stats().Refreshes, 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	head, ok := srv.Head(g.Family)
	if !ok || head.RefreshToken != r.RefreshToken || head.AccessToken != r.AccessToken {
		t.Errorf("Head(%q) = %v, %v; want the refreshed pair, true", g.Family, head, ok)
	}
	if got, want := string(head.JSON()), string(r.Body); got != want {
		t.Errorf("Head().JSON() = %s, want the response %s", got, want)
	}
	// The old access token lives on until it expires.
	if got := callAPI(t, srv, g.AccessToken).Status; got != http.StatusOK {
		t.Errorf("API with the pre-refresh access token: status %d, want 200", got)
	}
}

func TestIssueDistinct(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	seen := map[string]bool{}
	families := map[string]bool{}
	for range 50 {
		g := srv.Issue()
		for _, tok := range []string{g.AccessToken, g.RefreshToken} {
			if seen[tok] || url.QueryEscape(tok) != tok {
				t.Fatalf("Issue() token %q is repeated or not URL-safe", tok)
			}
			seen[tok] = true
		}
		if families[g.Family] {
			t.Fatalf("Issue() family %q repeated", g.Family)
		}
		families[g.Family] = true
	}
}

func TestGrantStringRedacts(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	s := g.String()
	if strings.Contains(s, g.AccessToken) || strings.Contains(s, g.RefreshToken) {
		t.Errorf("Grant.String() = %q, reveals a token", s)
	}
	if !strings.Contains(s, "at_REDACTED") {
		t.Errorf("Grant.String() = %q, want it to name the at_ token kind", s)
	}
}

func TestReuse(t *testing.T) {
	tests := []struct {
		name            string
		lenient         bool
		wantAlive       bool // the rotated pair survives the reuse
		wantRevocations int
	}{
		{"strict revokes family", false, false, 1},
		{"lenient keeps family", true, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{Lenient: tt.lenient})
			defer srv.Close()
			other := srv.Issue()
			g := srv.Issue()
			next := refresh(t, srv, g.RefreshToken)
			if next.Status != http.StatusOK {
				t.Fatalf("first refresh status = %d, want 200", next.Status)
			}
			r := refresh(t, srv, g.RefreshToken)
			if r.Status != http.StatusBadRequest || r.Error != "invalid_grant" {
				t.Errorf("reuse = %d %q, want 400 invalid_grant", r.Status, r.Error)
			}
			if got := srv.Alive(next.RefreshToken); got != tt.wantAlive {
				t.Errorf("Alive(rotated) = %v, want %v", got, tt.wantAlive)
			}
			if got := srv.FamilyAlive(g.Family); got != tt.wantAlive {
				t.Errorf("FamilyAlive = %v, want %v", got, tt.wantAlive)
			}
			wantAPI := http.StatusUnauthorized
			if tt.wantAlive {
				wantAPI = http.StatusOK
			}
			for _, at := range []string{g.AccessToken, next.AccessToken} {
				if got := callAPI(t, srv, at).Status; got != wantAPI {
					t.Errorf("API with family access token: status %d, want %d", got, wantAPI)
				}
			}
			wantRefresh := http.StatusBadRequest
			if tt.wantAlive {
				wantRefresh = http.StatusOK
			}
			if got := refresh(t, srv, next.RefreshToken).Status; got != wantRefresh {
				t.Errorf("refresh with rotated token: status %d, want %d", got, wantRefresh)
			}
			if !srv.FamilyAlive(other.Family) || !srv.Alive(other.RefreshToken) {
				t.Errorf("an unrelated family died")
			}
			st := srv.Stats()
			if st.ReuseAttempts != 1 || st.Revocations != tt.wantRevocations {
				t.Errorf("Stats() ReuseAttempts, Revocations = %d, %d; want 1, %d", st.ReuseAttempts, st.Revocations, tt.wantRevocations)
			}
		})
	}
}

func TestReuseGrace(t *testing.T) {
	const grace = 30 * time.Second
	tests := []struct {
		name        string
		wait        time.Duration
		rotateAgain bool // the issued pair was itself rotated before the reuse
		wantStatus  int
		wantAlive   bool
	}{
		{"within grace", grace, false, http.StatusOK, true},
		{"after grace", grace + time.Second, false, http.StatusBadRequest, false},
		{"within grace but rotated on", time.Second, true, http.StatusBadRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			srv := bearertest.NewServer(bearertest.Config{ReuseGrace: grace, Now: clk.Now})
			defer srv.Close()
			g := srv.Issue()
			next := refresh(t, srv, g.RefreshToken)
			if tt.rotateAgain {
				refresh(t, srv, next.RefreshToken)
			}
			clk.Add(tt.wait)
			r := refresh(t, srv, g.RefreshToken)
			if r.Status != tt.wantStatus {
				t.Fatalf("reuse status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if r.Status == http.StatusOK && (r.RefreshToken != next.RefreshToken || r.AccessToken != next.AccessToken) {
				t.Errorf("reuse within grace returned a new pair, want the one already issued")
			}
			if got := srv.FamilyAlive(g.Family); got != tt.wantAlive {
				t.Errorf("FamilyAlive = %v, want %v", got, tt.wantAlive)
			}
			if st := srv.Stats(); st.GraceReuses+st.Revocations != 1 || st.ReuseAttempts != 1 {
				t.Errorf("Stats() = %+v, want one reuse, answered by grace or revocation", st)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	clk := newClock()
	srv := bearertest.NewServer(bearertest.Config{
		AccessLifetime:  time.Minute,
		RefreshLifetime: time.Hour,
		Now:             clk.Now,
	})
	defer srv.Close()
	g := srv.Issue()
	if got, want := g.Expiry, clk.Now().Add(time.Minute); !got.Equal(want) {
		t.Errorf("Expiry = %v, want %v", got, want)
	}
	steps := []struct {
		advance    time.Duration
		wantAPI    int
		wantAlive  bool
		wantFamily bool
	}{
		{59 * time.Second, http.StatusOK, true, true},
		{time.Second, http.StatusUnauthorized, true, true}, // access expires at exactly its Expiry
		{time.Hour - time.Minute - time.Second, http.StatusUnauthorized, true, true},
		{time.Second, http.StatusUnauthorized, false, false},
	}
	for i, s := range steps {
		clk.Add(s.advance)
		if got := callAPI(t, srv, g.AccessToken).Status; got != s.wantAPI {
			t.Errorf("step %d: API status %d, want %d", i, got, s.wantAPI)
		}
		if got := srv.Alive(g.RefreshToken); got != s.wantAlive {
			t.Errorf("step %d: Alive = %v, want %v", i, got, s.wantAlive)
		}
		if got := srv.FamilyAlive(g.Family); got != s.wantFamily {
			t.Errorf("step %d: FamilyAlive = %v, want %v", i, got, s.wantFamily)
		}
	}
	if r := refresh(t, srv, g.RefreshToken); r.Error != "invalid_grant" {
		t.Errorf("refresh with expired token = %d %q, want invalid_grant", r.Status, r.Error)
	}
}

func TestConcurrentRefreshOfOneToken(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	const n = 8
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := srv.Client().Do(jsonRequest(t, srv, withClient(map[string]string{
				"grant_type": "refresh_token", "refresh_token": g.RefreshToken,
			})))
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent refreshes of one token succeeded, want 1", ok, n)
	}
	if srv.FamilyAlive(g.Family) {
		t.Errorf("FamilyAlive after concurrent reuse = true, want false")
	}
}
