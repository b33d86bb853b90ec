package bearertest

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxRequestBody bounds what the token endpoint reads from a request.
const maxRequestBody = 1 << 20

// deviceGrantType is the grant_type of RFC 8628 section 3.4.
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// answer is a token endpoint response before it is written, so that faults
// can mangle it.
type answer struct {
	status      int
	contentType string
	wwwAuth     string // WWW-Authenticate value, if any
	allow       string // Allow value, if any
	body        []byte
}

// tokenParams are the token request fields, from JSON or a form.
type tokenParams struct {
	GrantType    string `json:"grant_type"`
	RefreshToken string `json:"refresh_token"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	CodeVerifier string `json:"code_verifier"`
	Token        string `json:"token"` // of a revocation
	DeviceCode   string `json:"device_code"`
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	// Reading the whole body first lets net/http notice a client that goes
	// away, which cancels r.Context() for the waits below.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	s.mu.Lock()
	s.stats.TokenRequests++
	f, faulty := s.nextFaultLocked()
	s.mu.Unlock()
	if !s.sleep(r.Context(), s.cfg.Latency) {
		abort()
	}
	process := func() answer {
		if readErr != nil {
			return s.errorAnswer(http.StatusBadRequest, "invalid_request", "request body unreadable or too large")
		}
		return s.process(r, body)
	}
	if !faulty {
		s.write(w, process())
		return
	}
	s.serveFault(w, r, f, process)
}

// process answers a token request, changing server state.
func (s *Server) process(r *http.Request, body []byte) answer {
	if r.Method != http.MethodPost {
		a := s.errorAnswer(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts only POST")
		a.allow = http.MethodPost
		s.count(&s.stats.InvalidRequests)
		return a
	}
	p, err := parseParams(r.Header.Get("Content-Type"), body)
	if err != nil {
		s.count(&s.stats.InvalidRequests)
		return s.errorAnswer(http.StatusBadRequest, "invalid_request", err.Error())
	}
	if a, ok := s.authenticate(r, p); !ok {
		s.count(&s.stats.InvalidClients)
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	switch p.GrantType {
	case "refresh_token":
		return s.refreshLocked(p, now)
	case "authorization_code":
		return s.exchangeLocked(p, now)
	case deviceGrantType:
		return s.deviceGrantLocked(p, now)
	case "client_credentials":
		s.stats.ClientCredentials++
		return s.grantAnswer(s.issueLocked(nil, now), now)
	case "":
		s.stats.InvalidRequests++
		return s.errorAnswer(http.StatusBadRequest, "invalid_request", "missing grant_type")
	default:
		s.stats.InvalidRequests++
		return s.errorAnswer(http.StatusBadRequest, "unsupported_grant_type", "grant_type not supported")
	}
}

func (s *Server) count(n *int) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

func (s *Server) refreshLocked(p tokenParams, now time.Time) answer {
	if p.RefreshToken == "" {
		s.stats.InvalidRequests++
		return s.errorAnswer(http.StatusBadRequest, "invalid_request", "missing refresh_token")
	}
	rt := s.refresh[p.RefreshToken]
	switch {
	case rt == nil:
		return s.invalidGrantLocked("unknown refresh token")
	case rt.fam.revoked:
		if !rt.spent.IsZero() {
			s.stats.ReuseAttempts++
		}
		return s.invalidGrantLocked("refresh token revoked")
	case !rt.spent.IsZero():
		s.stats.ReuseAttempts++
		if s.cfg.ReuseGrace > 0 && now.Sub(rt.spent) <= s.cfg.ReuseGrace && rt.fam.head.RefreshToken == rt.next.RefreshToken {
			s.stats.GraceReuses++
			return s.grantAnswer(rt.next, now)
		}
		if !s.cfg.Lenient {
			s.revokeLocked(rt.fam)
		}
		return s.invalidGrantLocked("refresh token already used")
	case !now.Before(rt.expiry):
		return s.invalidGrantLocked("refresh token expired")
	}
	g := s.issueLocked(rt.fam, now)
	rt.spent = now
	rt.next = g
	s.stats.Refreshes++
	return s.grantAnswer(g, now)
}

func (s *Server) exchangeLocked(p tokenParams, now time.Time) answer {
	if p.Code == "" {
		s.stats.InvalidRequests++
		return s.errorAnswer(http.StatusBadRequest, "invalid_request", "missing code")
	}
	c := s.codes[p.Code]
	switch {
	case c == nil:
		return s.invalidGrantLocked("unknown authorization code")
	case c.used:
		// RFC 6749 section 4.1.2: a replayed code should revoke what it bought.
		if !s.cfg.Lenient && c.fam != nil {
			s.revokeLocked(c.fam)
		}
		return s.invalidGrantLocked("authorization code already used")
	case !now.Before(c.expiry):
		return s.invalidGrantLocked("authorization code expired")
	case p.RedirectURI != c.redirectURI:
		return s.invalidGrantLocked("redirect_uri does not match the authorization request")
	case c.challenge == "" && p.CodeVerifier != "":
		return s.invalidGrantLocked("code_verifier sent for a code issued without code_challenge")
	case c.challenge != "" && !verifierMatches(p.CodeVerifier, c.challenge):
		return s.invalidGrantLocked("code_verifier does not match code_challenge")
	}
	c.used = true
	g := s.startFamilyLocked(now)
	c.fam = s.families[g.Family]
	s.stats.Exchanges++
	return s.grantAnswer(g, now)
}

// verifierMatches checks a PKCE S256 verifier (RFC 7636 section 4.6).
func verifierMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

func (s *Server) invalidGrantLocked(desc string) answer {
	s.stats.InvalidGrants++
	return s.errorAnswer(http.StatusBadRequest, "invalid_grant", desc)
}

// authenticate checks the client credentials, from HTTP Basic auth if
// present (RFC 6749 section 2.3.1, each part form-url-encoded), else from
// the body.
func (s *Server) authenticate(r *http.Request, p tokenParams) (answer, bool) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			id, secret = "", ""
		}
	} else {
		id, secret = p.ClientID, p.ClientSecret
	}
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) == 1
	if idOK && secretOK {
		return answer{}, true
	}
	a := s.errorAnswer(http.StatusUnauthorized, "invalid_client", "client authentication failed")
	if basic {
		a.wwwAuth = `Basic realm="bearertest"`
	}
	return a, false
}

// parseParams decodes a token request body. It accepts JSON,
// application/x-www-form-urlencoded (also when Content-Type is missing) and
// multipart/form-data, and tolerates multipart sent under a JSON content
// type, as some OpenTicket examples do.
func parseParams(contentType string, body []byte) (tokenParams, error) {
	var p tokenParams
	mt, mparams, err := mime.ParseMediaType(contentType)
	if contentType == "" {
		mt, err = "application/x-www-form-urlencoded", nil
	}
	if err != nil {
		return p, fmt.Errorf("malformed Content-Type")
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if bytes.HasPrefix(body, []byte("--")) {
			return parseMultipart(body, sniffBoundary(body))
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return p, fmt.Errorf("malformed JSON body")
		}
		return p, nil
	case mt == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return p, fmt.Errorf("malformed form body")
		}
		return paramsFromValues(v), nil
	case mt == "multipart/form-data":
		return parseMultipart(body, mparams["boundary"])
	}
	return p, fmt.Errorf("unsupported Content-Type")
}

func sniffBoundary(body []byte) string {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	return strings.TrimSpace(strings.TrimPrefix(string(line), "--"))
}

func parseMultipart(body []byte, boundary string) (tokenParams, error) {
	if boundary == "" {
		return tokenParams{}, fmt.Errorf("malformed multipart body")
	}
	form, err := multipart.NewReader(bytes.NewReader(body), boundary).ReadForm(maxRequestBody)
	if err != nil {
		return tokenParams{}, fmt.Errorf("malformed multipart body")
	}
	defer form.RemoveAll()
	return paramsFromValues(form.Value), nil
}

func paramsFromValues(v map[string][]string) tokenParams {
	get := func(k string) string {
		if vs := v[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	return tokenParams{
		GrantType:    get("grant_type"),
		RefreshToken: get("refresh_token"),
		ClientID:     get("client_id"),
		ClientSecret: get("client_secret"),
		Code:         get("code"),
		RedirectURI:  get("redirect_uri"),
		CodeVerifier: get("code_verifier"),
		Token:        get("token"),
		DeviceCode:   get("device_code"),
	}
}

// grantAnswer encodes a successful token response.
func (s *Server) grantAnswer(g Grant, now time.Time) answer {
	tr := g.response(now)
	if !s.cfg.FormResponses {
		b, _ := json.Marshal(tr)
		return answer{status: http.StatusOK, contentType: "application/json", body: b}
	}
	info, _ := json.Marshal(tr.Info)
	v := url.Values{
		"token_type":   {tr.TokenType},
		"expires_in":   {strconv.FormatInt(tr.ExpiresIn, 10)},
		"access_token": {tr.AccessToken},
		"info":         {string(info)},
	}
	if tr.RefreshToken != "" {
		v.Set("refresh_token", tr.RefreshToken)
		v.Set("refresh_token_expires_in", strconv.FormatInt(tr.RefreshTokenExpiresIn, 10))
	}
	return answer{status: http.StatusOK, contentType: "application/x-www-form-urlencoded", body: []byte(v.Encode())}
}

// errorAnswer encodes an RFC 6749 section 5.2 error response.
func (s *Server) errorAnswer(status int, code, desc string) answer {
	if s.cfg.FormResponses {
		v := url.Values{"error": {code}, "error_description": {desc}}
		return answer{status: status, contentType: "application/x-www-form-urlencoded", body: []byte(v.Encode())}
	}
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	return answer{status: status, contentType: "application/json", body: b}
}

// write sends a answer whole.
func (s *Server) write(w http.ResponseWriter, a answer) {
	s.header(w, a)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	w.Write(a.body)
}

func (s *Server) header(w http.ResponseWriter, a answer) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if a.wwwAuth != "" {
		h.Set("WWW-Authenticate", a.wwwAuth)
	}
	if a.allow != "" {
		h.Set("Allow", a.allow)
	}
}
