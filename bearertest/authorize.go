package bearertest

import (
	"html/template"
	"net/http"
	"net/url"
)

// serveAuthorize is the authorization endpoint (RFC 6749 section 4.1.1):
// GET {URL}/authorize with the request in the query. A GET approves at once,
// unless Config.Consent asks for the consent page, whose buttons POST the
// same parameters back with decision=approve or decision=deny. A POST
// decides as its decision says, so a test can deny without the page.
//
// A request with an unknown client or an unusable redirect_uri is answered
// 400 here; any other mistake, and a denial, goes back to the redirect URI
// as an error, with the state, as section 4.1.2.1 says.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "the authorization endpoint accepts GET and POST", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	p := r.Form
	redirect, err := url.Parse(p.Get("redirect_uri"))
	switch {
	case p.Get("client_id") != s.cfg.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case err != nil || !redirect.IsAbs() || (redirect.Scheme != "http" && redirect.Scheme != "https"):
		http.Error(w, "missing or invalid redirect_uri", http.StatusBadRequest)
		return
	}
	back := func(v url.Values) {
		if st := p.Get("state"); st != "" {
			v.Set("state", st)
		}
		q := redirect.Query()
		for k, vs := range v {
			q[k] = vs
		}
		u := *redirect
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) {
		back(url.Values{"error": {code}, "error_description": {desc}})
	}
	challenge, method := p.Get("code_challenge"), p.Get("code_challenge_method")
	switch {
	case p.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case challenge != "" && method != "S256", challenge == "" && method != "":
		fail("invalid_request", "PKCE needs code_challenge with code_challenge_method=S256")
		return
	}
	decision := p.Get("decision")
	if r.Method == http.MethodGet {
		decision = "approve"
		if s.cfg.Consent {
			s.consentPage(w, p)
			return
		}
	}
	switch decision {
	case "approve":
		code := s.AuthorizeCode(redirect.String(), challenge)
		s.count(&s.stats.Authorizations)
		back(url.Values{"code": {code}})
	case "deny":
		s.count(&s.stats.Denials)
		fail("access_denied", "the user denied the request")
	default:
		fail("invalid_request", "decision must be approve or deny")
	}
}

// consentTemplate is the consent page: the request's parameters go back
// with the decision.
var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>bearertest: authorize {{.Client}}?</title></head>
<body>
<h1>Authorize {{.Client}}?</h1>
<p>It asks for: {{if .Scope}}{{.Scope}}{{else}}no particular scope{{end}}.</p>
<form method="post">
{{range $k, $vs := .Params}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">
{{end}}{{end}}<button name="decision" value="approve">Approve</button>
<button name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

func (s *Server) consentPage(w http.ResponseWriter, p url.Values) {
	params := url.Values{}
	for k, vs := range p {
		if k != "decision" {
			params[k] = vs
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	consentTemplate.Execute(w, struct {
		Client, Scope string
		Params        url.Values
	}{p.Get("client_id"), p.Get("scope"), params})
}
