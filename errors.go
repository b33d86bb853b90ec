package bearer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNoToken is reported, wrapped, by a [Store] that holds no token.
	ErrNoToken = errors.New("bearer: no token stored")

	// ErrReauthorize means the refresh token expired, was revoked or was
	// already spent: only a person authorizing the app again gets a new one.
	// Branch on it with errors.Is.
	ErrReauthorize = errors.New("bearer: authorization needed again: the refresh token expired, was revoked or was already used")

	// ErrInterrupted means a refresh of the stored refresh token was begun
	// earlier (by this or another process) and never completed: the server
	// may have spent the token. An error that wraps it also matches
	// ErrReauthorize when the server rejects the token.
	ErrInterrupted = errors.New("bearer: an earlier refresh of this token was interrupted; the refresh token may have been spent")

	// ErrConflict is reported, wrapped, by a compare-and-swap that found
	// the store holding another token than the one the swap started from.
	ErrConflict = errors.New("bearer: the store holds a different token")

	// ErrLockLost is reported, wrapped, when a store lock (such as a Redis
	// lease) lapsed before the work under it was saved.
	ErrLockLost = errors.New("bearer: the store lock was lost")

	// ErrUnstorable is reported, wrapped, by a Save that refuses a token
	// its store would not read back: a token Load would refuse (a control
	// character in it, an Info that is not JSON, a file over the size Load
	// reads) or would read changed (text that is not UTF-8). Nothing is
	// written; the store keeps what it held.
	ErrUnstorable = errors.New("bearer: the token cannot be stored")

	// ErrInsecure is reported, wrapped, when a token would be sent over
	// plain http to a host that is not loopback and the user has not
	// opted in.
	ErrInsecure = errors.New("bearer: refusing to send a token over plain http")

	// errNoSource is returned by a Transport whose Source is nil.
	errNoSource = errors.New("bearer: Transport.Source is nil")
)

// errorf is fmt.Errorf for this package's errors: the text says "bearer:"
// once, at its start, however many errors of this package it wraps, and
// the result still unwraps to them (errors.Is, errors.As).
func errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &chainError{text: prefix + strings.ReplaceAll(err.Error(), prefix, ""), err: err}
}

const prefix = "bearer: "

// chainError is an error of errorf.
type chainError struct {
	text string
	err  error
}

func (e *chainError) Error() string { return e.text }
func (e *chainError) Unwrap() error { return e.err }

// RetrieveError is a failed token endpoint request (or revocation or
// device authorization request): an OAuth error answer, an unexpected
// status, or an answer that is not a usable token.
//
// Is reports ErrReauthorize for the "invalid_grant" error code. The fields
// never hold a secret: the body excerpt and the OAuth fields withhold every
// credential the request carried, as a server may echo it (verbatim,
// HTML-escaped, percent-encoded, JSON-escaped, with '+' for a space, mixed
// or nested), and any run of 8 of its characters; the body excerpt is
// empty for successful answers, which carry tokens.
type RetrieveError struct {
	// StatusCode is the HTTP status, 0 when no answer arrived.
	StatusCode int
	// ErrorCode is the OAuth "error" field, such as "invalid_grant".
	ErrorCode string
	// ErrorDescription is the OAuth "error_description" field.
	ErrorDescription string
	// ErrorURI is the OAuth "error_uri" field.
	ErrorURI string
	// Body is a short, cleaned excerpt of an error answer's body.
	Body string
	// RetryAfter is the wait the server asked for with Retry-After.
	RetryAfter time.Duration
	// Attempts is how many requests were sent.
	Attempts int
	// Err is the underlying cause: a transport error, or why the answer
	// could not be used. It may be nil.
	Err error

	// lost marks an answer that never arrived whole (a transport error,
	// a connection cut mid-body): its outcome is unknown.
	lost bool
	// spent marks a successful answer that was read and whose new refresh
	// token is not a string of VSCHAR: the server rotated, so the token
	// sent is spent and the chain cannot go on.
	spent bool
	// endpoint names the endpoint that failed; "" is the token endpoint.
	endpoint string
}

// Error describes the failure with the status, the OAuth error code and
// description, and for other answers a cleaned excerpt of the body.
func (e *RetrieveError) Error() string {
	var b strings.Builder
	b.WriteString("bearer: ")
	if e.endpoint == "" {
		b.WriteString("token endpoint")
	} else {
		b.WriteString(e.endpoint)
	}
	if e.StatusCode != 0 {
		b.WriteString(": status ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.ErrorCode != "" {
		b.WriteString(": ")
		b.WriteString(e.ErrorCode)
	}
	if e.ErrorDescription != "" {
		b.WriteString(": ")
		b.WriteString(e.ErrorDescription)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.ErrorCode == "" && e.Body != "" {
		fmt.Fprintf(&b, ": body %q", e.Body)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *RetrieveError) Unwrap() error { return e.Err }

// Is reports whether the error implies target: invalid_grant implies
// ErrReauthorize.
func (e *RetrieveError) Is(target error) bool {
	return target == ErrReauthorize && (e.ErrorCode == "invalid_grant" || e.spent)
}

// temporary reports whether sending the same request again may succeed.
func (e *RetrieveError) temporary() bool {
	if e.lost {
		return true
	}
	if e.ErrorCode != "" && e.StatusCode < 500 && e.StatusCode != 429 {
		return false
	}
	return e.StatusCode == 0 || e.StatusCode == 429 || e.StatusCode >= 500
}
