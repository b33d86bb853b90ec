package bearertest_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

func revokeRequest(t *testing.T, srv *bearertest.Server, fields map[string]string) reply {
	t.Helper()
	req := jsonRequest(t, srv, fields)
	u, err := url.Parse(srv.RevocationURL())
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
	return send(t, srv, req)
}

func TestRevokeEndpoint(t *testing.T) {
	tests := []struct {
		name       string
		token      func(g bearertest.Grant) string
		client     bool // send the client credentials
		wantStatus int
		wantError  string
		wantDead   bool
	}{
		{"refresh token", func(g bearertest.Grant) string { return g.RefreshToken }, true, http.StatusOK, "", true},
		{"access token", func(g bearertest.Grant) string { return g.AccessToken }, true, http.StatusOK, "", true},
		{"unknown token", func(bearertest.Grant) string { return "rt_unknown" }, true, http.StatusOK, "", false},
		{"no token", func(bearertest.Grant) string { return "" }, true, http.StatusBadRequest, "invalid_request", false},
		{"no client", func(g bearertest.Grant) string { return g.RefreshToken }, false, http.StatusUnauthorized, "invalid_client", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := bearertest.NewServer(bearertest.Config{})
			defer srv.Close()
			g := srv.Issue()
			fields := map[string]string{"token": tt.token(g), "token_type_hint": "refresh_token"}
			if tt.client {
				withClient(fields)
			}
			r := revokeRequest(t, srv, fields)
			if r.Status != tt.wantStatus || r.Error != tt.wantError {
				t.Errorf("revoke = %d %q, want %d %q", r.Status, r.Error, tt.wantStatus, tt.wantError)
			}
			if got := srv.FamilyAlive(g.Family); got == tt.wantDead {
				t.Errorf("FamilyAlive = %t, want %t", got, !tt.wantDead)
			}
			if tt.wantDead && callAPI(t, srv, g.AccessToken).Status != http.StatusUnauthorized {
				t.Errorf("the API still accepts the family's access token")
			}
			if tt.wantDead && refresh(t, srv, g.RefreshToken).Error != "invalid_grant" {
				t.Errorf("the revoked refresh token still refreshes")
			}
			if got := srv.Stats().RevokeRequests; got != 1 {
				t.Errorf("RevokeRequests = %d, want 1", got)
			}
		})
	}
}

func TestRevokeEndpointForm(t *testing.T) {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()
	g := srv.Issue()
	req := formRequest(t, srv, url.Values{"token": {g.RefreshToken}, "client_id": {bearertest.DefaultClientID}, "client_secret": {bearertest.DefaultClientSecret}})
	u, _ := url.Parse(srv.RevocationURL())
	req.URL = u
	if r := send(t, srv, req); r.Status != http.StatusOK || srv.FamilyAlive(g.Family) {
		t.Errorf("form revocation = %d, family alive %t; want 200 and dead", r.Status, srv.FamilyAlive(g.Family))
	}
	get, _ := http.NewRequest(http.MethodGet, srv.RevocationURL(), nil)
	if r := send(t, srv, get); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET = %d, Allow %q; want 405, POST", r.Status, r.Header.Get("Allow"))
	}
}
