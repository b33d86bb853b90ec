package bearertest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

func TestAPI(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	revoked := srv.Issue()
	srv.RevokeAccess(revoked.AccessToken)
	gone := srv.Issue()
	srv.RevokeFamily(gone.Family)

	tests := []struct {
		name       string
		method     string
		path       string
		auth       string
		body       string
		wantStatus int
		wantAuth   string // substring of WWW-Authenticate
	}{
		{"live token", "GET", "x", "Bearer " + g.AccessToken, "", 200, ""},
		{"scheme case-insensitive", "GET", "x", "bEARER " + g.AccessToken, "", 200, ""},
		{"POST echoes body length", "POST", "things", "Bearer " + g.AccessToken, "hello", 200, ""},
		{"no Authorization", "GET", "x", "", "", 401, `error="invalid_token"`},
		{"Basic scheme", "GET", "x", "Basic " + g.AccessToken, "", 401, `error="invalid_token"`},
		{"unknown token", "GET", "x", "Bearer at_bogus", "", 401, `error="invalid_token"`},
		{"refresh token as bearer", "GET", "x", "Bearer " + g.RefreshToken, "", 401, `error="invalid_token"`},
		{"revoked access token", "GET", "x", "Bearer " + revoked.AccessToken, "", 401, `error="invalid_token"`},
		{"revoked family", "GET", "x", "Bearer " + gone.AccessToken, "", 401, `error="invalid_token"`},
		{"insufficient scope", "GET", "scope-required", "Bearer " + g.AccessToken, "", 401, `error="insufficient_scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.APIURL()+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			r := send(t, srv, req)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.wantStatus, r.Body)
			}
			if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.wantAuth) || (tt.wantAuth == "") != (got == "") {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", got, tt.wantAuth)
			}
			if r.Status != http.StatusOK {
				return
			}
			var got struct {
				OK      bool   `json:"ok"`
				Path    string `json:"path"`
				Method  string `json:"method"`
				BodyLen int    `json:"body_len"`
			}
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatalf("decoding %s: %v", r.Body, err)
			}
			if !got.OK || got.Path != "/api/"+tt.path || got.Method != tt.method || got.BodyLen != len(tt.body) {
				t.Errorf("answer = %+v, want ok, path /api/%s, method %s, body_len %d", got, tt.path, tt.method, len(tt.body))
			}
		})
	}
	st := srv.Stats()
	if st.APIRequests != len(tests) || st.APIRejected != 7 {
		t.Errorf("Stats() APIRequests, APIRejected = %d, %d; want %d, 7", st.APIRequests, st.APIRejected, len(tests))
	}
	if !srv.FamilyAlive(revoked.Family) {
		t.Errorf("RevokeAccess killed the family, want only the access token revoked")
	}
	if srv.FamilyAlive(gone.Family) || srv.Alive(gone.RefreshToken) {
		t.Errorf("RevokeFamily left the family alive")
	}
	if r := refresh(t, srv, gone.RefreshToken); r.Error != "invalid_grant" {
		t.Errorf("refresh in revoked family = %d %q, want invalid_grant", r.Status, r.Error)
	}
}

func TestCloseIdempotent(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	srv.Close()
	srv.Close()
	if _, err := srv.Client().Get(srv.APIURL()); err == nil {
		t.Errorf("request after Close succeeded, want an error")
	}
}
