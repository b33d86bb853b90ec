package bearertest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// scopePath is the API path that demands a scope no token has.
const scopePath = "/api/scope-required"

// serveAPI is the protected API: any path under /api/ answers 200 to a live
// access token, echoing what it received.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	tok, hasTok := bearerToken(r.Header.Get("Authorization"))

	s.mu.Lock()
	s.stats.APIRequests++
	ok := hasTok && s.liveAccessLocked(tok)
	scoped := ok && r.URL.Path == scopePath
	if !ok || scoped {
		s.stats.APIRejected++
	}
	s.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch {
	case !hasTok:
		// RFC 6750 section 3.1 would leave the error code out when no
		// credentials were sent; it is kept so that every rejection of
		// a missing or dead token reads the same to a client under test.
		h.Set("WWW-Authenticate", `Bearer realm="bearertest", error="invalid_token", error_description="no bearer token"`)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"unauthorized"}`))
	case !ok:
		h.Set("WWW-Authenticate", `Bearer realm="bearertest", error="invalid_token", error_description="the access token is unknown, expired or revoked"`)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_token"}`))
	case scoped:
		h.Set("WWW-Authenticate", `Bearer realm="bearertest", error="insufficient_scope", scope="admin"`)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"insufficient_scope"}`))
	default:
		json.NewEncoder(w).Encode(struct {
			OK      bool   `json:"ok"`
			Path    string `json:"path"`
			Method  string `json:"method"`
			BodyLen int64  `json:"body_len"`
		}{true, r.URL.Path, r.Method, n})
	}
}

// bearerToken extracts the token of an Authorization header using the
// Bearer scheme, whose name is case-insensitive.
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

func (s *Server) liveAccessLocked(tok string) bool {
	a := s.access[tok]
	if a == nil || a.revoked || (a.fam != nil && a.fam.revoked) {
		return false
	}
	return s.cfg.Now().Before(a.expiry)
}
