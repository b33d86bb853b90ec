package bearertest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Fault describes misbehaviour of the token endpoint, queued with
// [Server.InjectFault]. The zero Fault answers normally.
//
// Unless Consume is set, a faulty answer is given instead of processing the
// request, so server state is unchanged (a fault that only delays processes
// the request after its Delay). Where a fault needs a body and Body
// is empty, it uses an error body if Status is set, the real answer if
// Consume is set, and otherwise a well-formed token response whose tokens
// the server never issued.
//
// At most one of Reset, HugeBody and the rest applies, in that order of
// precedence. Truncate and Trickle combine: the half body is trickled.
type Fault struct {
	// Count is how many consecutive token requests the fault applies to.
	// Zero means 1.
	Count int

	// Status is the HTTP status to answer with. Zero means 200, or the real
	// answer's status when Consume is set.
	Status int
	// Body is the response body. Its Content-Type is sniffed, so an HTML
	// error page is labelled text/html.
	Body string
	// RetryAfter, if positive, sets a Retry-After header in whole seconds,
	// rounded up.
	RetryAfter time.Duration

	// Delay holds the answer back. Without Consume the request is
	// processed after the delay, so a client that gives up during it
	// leaves the server unchanged. A fault with only Delay set is a slow
	// but otherwise normal answer.
	Delay time.Duration

	// Truncate sends the first half of the body, without Content-Length,
	// and ends the response cleanly: valid-looking JSON cut short.
	Truncate bool
	// Reset hijacks the connection, writes the status line, headers with
	// the full Content-Length and half the body, then closes the
	// connection, so the client fails mid-body.
	Reset bool
	// HugeBody, if positive, answers with a JSON-looking body of this many
	// bytes, streamed without being held in memory.
	HugeBody int64
	// Trickle, if positive, sends the headers at once and then the body
	// one byte per Trickle, until done or the client goes away.
	Trickle time.Duration

	// Consume processes the request before the fault strikes: a refresh
	// rotates the token server-side and then the answer is lost or
	// mangled. It models a request that was sent but never answered.
	Consume bool
}

// passThrough reports whether f changes nothing but the timing.
func (f Fault) passThrough() bool {
	return f.Status == 0 && f.Body == "" && f.RetryAfter <= 0 && !f.Truncate &&
		!f.Reset && f.HugeBody <= 0 && f.Trickle <= 0
}

// InjectFault queues f for the next f.Count token endpoint requests. Faults
// apply in the order they were injected, each to as many requests as its
// Count. The protected API is never faulty.
func (s *Server) InjectFault(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

func (s *Server) nextFaultLocked() (Fault, bool) {
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	f := s.faults[0]
	if s.faults[0].Count--; s.faults[0].Count == 0 {
		s.faults = s.faults[1:]
	}
	s.stats.Faults++
	return f, true
}

func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f Fault, process func() answer) {
	s.writers.Add(1)
	defer s.writers.Done()
	ctx := r.Context()
	var real answer
	if f.Consume {
		real = process()
	}
	if !s.sleep(ctx, f.Delay) {
		abort()
	}
	if f.passThrough() {
		if !f.Consume {
			real = process()
		}
		s.write(w, real)
		return
	}
	a := s.faultAnswer(f, real)
	if f.RetryAfter > 0 {
		secs := (f.RetryAfter + time.Second - 1) / time.Second
		w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	switch {
	case f.Reset:
		s.reset(w, a)
	case f.HugeBody > 0:
		s.huge(ctx, w, a.status, f.HugeBody)
	default:
		s.mangle(ctx, w, a, f)
	}
}

// faultAnswer is what a fault sends before mangling it.
func (s *Server) faultAnswer(f Fault, real answer) answer {
	var a answer
	switch {
	case f.Body != "":
		a = answer{status: http.StatusOK, body: []byte(f.Body)}
		a.contentType = http.DetectContentType(a.body)
	case f.Status != 0:
		a = s.errorAnswer(f.Status, errorCode(f.Status), "injected fault")
	case f.Consume:
		a = real
	default:
		now := s.cfg.Now()
		a = s.grantAnswer(Grant{
			AccessToken:   newToken("at_unissued_"),
			RefreshToken:  newToken("rt_unissued_"),
			Expiry:        now.Add(s.cfg.AccessLifetime),
			RefreshExpiry: now.Add(s.cfg.RefreshLifetime),
		}, now)
	}
	if f.Status != 0 {
		a.status = f.Status
	}
	return a
}

// errorCode picks the RFC 6749 error code closest to an injected status.
func errorCode(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_client"
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request"
}

// abort ends a handler cut short by its client or by Close. Returning would
// let net/http complete the response, turning a lost answer into an empty 200
// or a cleanly ended chunked body; aborting closes the connection instead.
func abort() {
	panic(http.ErrAbortHandler)
}

// mangle writes a, truncated and trickled as f says.
func (s *Server) mangle(ctx context.Context, w http.ResponseWriter, a answer, f Fault) {
	body := a.body
	s.header(w, a)
	if f.Truncate {
		body = body[:len(body)/2]
		w.Header().Del("Content-Length")
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(a.status)
	rc := http.NewResponseController(w)
	if f.Trickle <= 0 {
		w.Write(body)
		// Flushing before the handler returns stops net/http from adding
		// a Content-Length to a truncated body.
		rc.Flush()
		return
	}
	if rc.Flush() != nil {
		return
	}
	for i := range body {
		if !s.sleep(ctx, f.Trickle) {
			abort()
		}
		if _, err := w.Write(body[i : i+1]); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// reset writes the head of a and half its body on the raw connection, then
// closes it.
func (s *Server) reset(w http.ResponseWriter, a answer) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): aborting the handler resets the stream.
		abort()
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n\r\n",
		a.status, http.StatusText(a.status), a.contentType, len(a.body))
	brw.Write(a.body[:len(a.body)/2])
	brw.Flush()
}

// huge streams a JSON-looking body of n bytes in fixed-size chunks.
func (s *Server) huge(ctx context.Context, w http.ResponseWriter, status int, n int64) {
	if status == 0 {
		status = http.StatusOK
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)

	prefix := []byte(`{"token_type":"Bearer","access_token":"at_`)
	suffix := []byte(`"}`)
	if n < int64(len(prefix)+len(suffix)) {
		w.Write(append(prefix, suffix...)[:n])
		return
	}
	if _, err := w.Write(prefix); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for pad := n - int64(len(prefix)+len(suffix)); pad > 0; {
		select {
		case <-ctx.Done():
			abort()
		case <-s.done:
			abort()
		default:
		}
		k := min(pad, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		pad -= k
	}
	w.Write(suffix)
}
