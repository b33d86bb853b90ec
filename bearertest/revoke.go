package bearertest

import (
	"io"
	"net/http"
)

// serveRevoke is the revocation endpoint (RFC 7009): POST {URL}/revoke with
// token (and token_type_hint, which it does not need), the client
// authenticated as at the token endpoint, in JSON or a form. A refresh or
// access token of a family revokes the whole family, as a user withdrawing
// consent would; an unknown token is answered 200 too, as section 2.2 says.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	s.count(&s.stats.RevokeRequests)
	if r.Method != http.MethodPost {
		a := s.errorAnswer(http.StatusMethodNotAllowed, "invalid_request", "the revocation endpoint accepts only POST")
		a.allow = http.MethodPost
		s.write(w, a)
		return
	}
	if err != nil {
		s.write(w, s.errorAnswer(http.StatusBadRequest, "invalid_request", "request body unreadable or too large"))
		return
	}
	p, err := parseParams(r.Header.Get("Content-Type"), body)
	if err != nil {
		s.write(w, s.errorAnswer(http.StatusBadRequest, "invalid_request", err.Error()))
		return
	}
	if a, ok := s.authenticate(r, p); !ok {
		s.count(&s.stats.InvalidClients)
		s.write(w, a)
		return
	}
	if p.Token == "" {
		s.write(w, s.errorAnswer(http.StatusBadRequest, "invalid_request", "missing token"))
		return
	}
	s.mu.Lock()
	if rt := s.refresh[p.Token]; rt != nil {
		s.revokeLocked(rt.fam)
	} else if at := s.access[p.Token]; at != nil {
		at.revoked = true
		if at.fam != nil {
			s.revokeLocked(at.fam)
		}
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
