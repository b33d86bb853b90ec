package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	tokenHost = "auth.sim.test"
	apiHost   = "api.sim.test"
	tokenURL  = "https://" + tokenHost + "/token"
	apiURL    = "https://" + apiHost + "/resource"
)

// server is a strict OAuth server: every refresh rotates both tokens, a
// refresh token presented again revokes the whole family, and a request is
// processed once it arrives, whether or not its client still waits. It
// records every presentation of every refresh token.
type server struct {
	w *world

	mu      sync.Mutex // guards everything below
	chain   []*issued  // every token issued, in order; chain[0] is the initial one
	byRT    map[string]*issued
	byAT    map[string]*issued
	revoked *presentation // the presentation that revoked the family
	pres    []*presentation
}

// issued is one rotation: an access and a refresh token.
type issued struct {
	idx      int
	rt, at   string
	issuedAt time.Time
	life     time.Duration // on the server's clock
	said     time.Duration // what expires_in told the client
	unusable bool          // sent in an answer the client cannot use

	by         *presentation // nil for the initial token
	delivered  bool          // the answer carrying it reached its client
	receivedAt time.Time     // when, on the shared clock
	receiver   int           // the process it reached; -1 for the initial token

	spent     *presentation // the presentation that consumed rt
	saved     bool          // a write of it landed in the store
	atRevoked bool
}

func (it *issued) expires() time.Time { return it.issuedAt.Add(it.life) }

// lifeShort is how much earlier than it says the short-life mutant's server
// lets access tokens expire.
const lifeShort = 30 * time.Second

// presentation is one token request that reached the grant logic.
type presentation struct {
	id     int
	proc   int
	n      int // the process's n-th token request
	sentAt time.Time
	at     time.Time // processed
	rt     string
	known  *issued // the token rt belongs to, nil if unknown
	result string

	consumed *issued // the token this presentation issued, if it rotated
	// Its outcome as the client saw it: delivered, or lost (and when the
	// client learnt, or could have learnt, that it would never know).
	delivered bool
	lost      string
	lostAt    time.Time
}

// exchange ties a request in flight to its presentation, which does not
// exist until the server processes it.
type exchange struct {
	pres   *presentation
	gone   string // the client stopped waiting, and why
	goneAt time.Time
}

func newServer(w *world) *server {
	return &server{w: w, byRT: map[string]*issued{}, byAT: map[string]*issued{}}
}

// issue makes the next rotation. s.mu is held.
func (s *server) issue(now time.Time, by *presentation) *issued {
	idx := len(s.chain)
	it := &issued{
		idx: idx, rt: "rt-" + strconv.Itoa(idx), at: "at-" + strconv.Itoa(idx),
		issuedAt: now, life: s.w.s.life(idx), by: by, receiver: -1,
	}
	it.said = it.life
	if s.w.s.opts.mutant == "short-life" && by != nil {
		it.life -= lifeShort // it says one thing and does another
	}
	s.chain = append(s.chain, it)
	s.byRT[it.rt] = it
	s.byAT[it.at] = it
	return it
}

// grant processes a refresh grant for rt. It returns the presentation and
// the answer the server means to give.
func (s *server) grant(proc, n int, rt string, sent time.Time, ex *exchange) (*presentation, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	pr := &presentation{id: len(s.pres), proc: proc, n: n, sentAt: sent, at: now, rt: rt, known: s.byRT[rt]}
	s.pres = append(s.pres, pr)
	ex.pres = pr
	if ex.gone != "" {
		pr.lost, pr.lostAt = ex.gone, ex.goneAt
	}
	it := pr.known
	switch {
	case it == nil:
		pr.result = "invalid_grant (unknown token)"
	case s.revoked != nil:
		pr.result = "invalid_grant (family revoked)"
	case it.spent != nil:
		s.revoked = pr
		pr.result = fmt.Sprintf("invalid_grant: %s presented again, family revoked", rt)
	default:
		it.spent = pr
		next := s.issue(now, pr)
		pr.consumed = next
		pr.result = fmt.Sprintf("rotated %s -> %s (%s, %v)", rt, next.rt, next.at, next.life)
		body := fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","refresh_token":%q,"expires_in":%d}`,
			next.at, next.rt, int(next.said/time.Second))
		return pr, http.StatusOK, body
	}
	return pr, http.StatusBadRequest, `{"error":"invalid_grant","error_description":"the refresh token is not valid"}`
}

// oddAnswers are 2xx answers the client cannot use although it can read
// the new refresh token in them (issue 12, point 1). %[1]q is the access
// token, %[2]q the refresh token, %[3]d the lifetime.
var oddAnswers = []string{
	`{"access_token":%[1]q,"token_type":"DPoP","refresh_token":%[2]q,"expires_in":%[3]d}`,
	`{"access_token":%[1]q,"token_type":"mac","refresh_token":%[2]q,"expires_in":%[3]d}`,
	`{"access_token":"%[1]s x","token_type":"Bearer","refresh_token":%[2]q,"expires_in":%[3]d}`,
	`{"access_token":%[1]q,"refresh_token":%[2]q,"expires_in":%[3]d,"refresh_token_expires_in":-1}`,
	`{"access_token":%[1]q,"refresh_token":%[2]q,"expires_in":"%[3]ds"}`,
	`{"access_token":%[1]q,"refresh_token":%[2]q,"expires_in":true}`,
	`{"access_token":%[1]q,"refresh_token":%[2]q,"expires_in":1e400}`,
}

// reply is what reaches the client of a token request.
type reply struct {
	status int
	header http.Header
	body   string
	err    error  // a transport error instead of an answer
	lost   string // why the answer carries nothing the client can read
}

var errConnReset = errors.New("sim: connection reset by peer")

// tokenRequest is the token endpoint as process p's network reaches it.
func (w *world) tokenRequest(p *proc, req *http.Request, body []byte) (*http.Response, error) {
	ctx := req.Context()
	p.ioAfterClose("token request")
	if err := p.gate(ctx); err != nil {
		return nil, err
	}
	n := p.nextTokenRequest()
	f := w.s.tokenFault(p.id, n)
	var form struct {
		GrantType    string `json:"grant_type"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &form); err != nil || form.GrantType != "refresh_token" {
		w.failf("p%d sent a token request that is not a refresh grant: %q", p.id, body)
		return nil, errors.New("sim: bad request")
	}
	rt := form.RefreshToken
	if c := p.plan.crash; c.kind == crashBeforeSend && c.n == n {
		p.crash(fmt.Sprintf("before sending token request #%d (%s)", n, rt))
		return nil, p.gate(ctx)
	}
	if f.kind != tfNone {
		w.logf("p%d token request #%d (%s): %v", p.id, n, rt, f.kind)
	}
	sent := time.Now()
	ex := &exchange{}
	replies := make(chan reply, 1)
	w.bg.Go(func() { w.srv.handle(p, n, rt, f, sent, ex, replies) })
	select {
	case r := <-replies:
		return w.srv.deliver(p, req, ex, r)
	case <-ctx.Done():
		w.srv.clientGone(ex, "the client stopped waiting: "+context.Cause(ctx).Error())
		return nil, ctx.Err()
	case <-p.crashCh:
		w.srv.clientGone(ex, "the client crashed")
		return nil, p.gate(ctx)
	}
}

// handle is the request on the wire and in the server.
func (s *server) handle(p *proc, n int, rt string, f tokenFault, sent time.Time, ex *exchange, replies chan<- reply) {
	time.Sleep(f.reqDelay)
	switch f.kind {
	case tfLostRequest:
		replies <- reply{err: errConnReset}
		return
	case tf5xx, tf429:
		time.Sleep(f.respDelay)
		r := reply{status: http.StatusServiceUnavailable, header: http.Header{}, body: `<html>unavailable</html>`}
		if f.kind == tf429 {
			r.status, r.body = http.StatusTooManyRequests, `{"error":"slow_down"}`
		}
		if f.retryAfter > 0 {
			r.header.Set("Retry-After", strconv.Itoa(f.retryAfter))
		}
		replies <- r
		return
	}
	pr, status, body := s.grant(p.id, n, rt, sent, ex)
	s.w.logf("server: p%d #%d %s", p.id, n, pr.result)
	if c := p.plan.crash; c.kind == crashAfterConsume && c.n == n {
		p.crash(fmt.Sprintf("after the server processed token request #%d", n))
		return // the client is waiting on crashCh
	}
	time.Sleep(f.respDelay)
	r := reply{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: body}
	if status == http.StatusOK {
		switch f.kind {
		case tfLostAnswer:
			r = reply{err: errConnReset, lost: "answer lost (connection reset)"}
		case tfLost502:
			r = reply{status: http.StatusBadGateway, header: http.Header{}, body: "bad gateway", lost: "answer lost (502 from a gateway)"}
		case tfGarbled:
			r.body, r.lost = body[:len(body)/2], "answer garbled (cut short)"
		case tfOdd:
			it := pr.consumed
			s.mu.Lock()
			it.unusable = true
			s.mu.Unlock()
			r.body = fmt.Sprintf(oddAnswers[f.odd], it.at, it.rt, int(it.said/time.Second))
		}
	}
	replies <- r
}

// deliver hands r to the client and records the outcome.
func (s *server) deliver(p *proc, req *http.Request, ex *exchange, r reply) (*http.Response, error) {
	now := time.Now()
	s.mu.Lock()
	if pr := ex.pres; pr != nil {
		if r.lost != "" {
			pr.lost, pr.lostAt = r.lost, now
		} else if r.err == nil {
			pr.delivered = true
			if it := pr.consumed; it != nil {
				it.delivered, it.receivedAt, it.receiver = true, now, p.id
			}
		}
	}
	s.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", r.status, http.StatusText(r.status)),
		StatusCode:    r.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.header,
		Body:          io.NopCloser(strings.NewReader(r.body)),
		ContentLength: int64(len(r.body)),
		Request:       req,
	}, nil
}

// clientGone records that the client will never read the answer.
func (s *server) clientGone(ex *exchange, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ex.gone, ex.goneAt = why, time.Now()
	if pr := ex.pres; pr != nil && !pr.delivered && pr.lost == "" {
		pr.lost, pr.lostAt = why, ex.goneAt
	}
}

// revokeNewest revokes the newest access token early.
func (s *server) revokeNewest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.chain[len(s.chain)-1]
	it.atRevoked = true
	return it.at
}

// apiRequest is the protected API as process p's network reaches it. It
// checks the token at arrival, the moment the Transport handed it out.
func (w *world) apiRequest(p *proc, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := p.gate(ctx); err != nil {
		return nil, err
	}
	caller, _ := strconv.Atoi(req.Header.Get("X-Sim-Caller"))
	n := w.nextAPIRequest(caller)
	auth := req.Header.Get("Authorization")
	at, ok := strings.CutPrefix(auth, "Bearer ")
	status := http.StatusOK
	s := w.srv
	s.mu.Lock()
	it := s.byAT[at]
	switch {
	case !ok || it == nil:
		w.failf("p%d c%d sent Authorization %q, not a token the server issued", p.id, caller, auth)
		status = http.StatusUnauthorized
	case s.revoked != nil || it.atRevoked:
		status = http.StatusUnauthorized
	case !time.Now().Before(it.expires()):
		status = http.StatusUnauthorized
	}
	s.mu.Unlock()
	if it != nil {
		w.checkHandout(p, fmt.Sprintf("c%d %s request #%d", caller, req.Method, n), it, time.Time{})
	}
	if !sleepCtx(ctx, w.s.apiDelay(caller, n)) {
		return nil, ctx.Err()
	}
	h := http.Header{"Content-Type": {"text/plain"}}
	body := "ok"
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		body = "unauthorized"
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}, nil
}

// network is a process's connection to the world: the token endpoint and
// the API. It is Config.HTTPClient's Transport and Transport.Base.
type network struct{ p *proc }

func (n network) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	switch req.URL.Host {
	case tokenHost:
		return n.p.w.tokenRequest(n.p, req, body)
	case apiHost:
		if req.Method == http.MethodPost && !bytes.Equal(body, postBody) {
			n.p.w.failf("p%d: a POST arrived with body %q, want %q", n.p.id, body, postBody)
		}
		return n.p.w.apiRequest(n.p, req)
	}
	return nil, fmt.Errorf("sim: no route to %s", req.URL.Host)
}

var postBody = []byte(`{"n":1}`)

// sleepCtx sleeps d and reports true, or false if ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
