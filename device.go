package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DeviceAuth obtains the first token with the device authorization grant
// (RFC 8628), for a program on a machine without a browser: it asks
// [Config.DeviceAuthURL] for a code, calls prompt with the user code and
// where the person enters it (verificationURIComplete, "" if the server
// sends none, holds the code already, for a link or a QR code), then polls
// the token endpoint until the person approves, at the interval the server
// asks (five seconds if it names none, five more after each slow_down).
//
// It ends with the token (save it in the Store a [Source] will use), with a
// [*RetrieveError] whose ErrorCode is "access_denied" when the person
// refused or "expired_token" when the code expired, with an error wrapping
// context.DeadlineExceeded when the code's lifetime passed without an
// answer, or when ctx ends. Like [Config.AuthCodeURL] it has no default
// endpoint: an empty DeviceAuthURL is an error, and nothing is sent.
func (c *Config) DeviceAuth(ctx context.Context, prompt func(userCode, verificationURI, verificationURIComplete string)) (*Token, error) {
	params := map[string]string{}
	if len(c.Scopes) > 0 {
		params["scope"] = strings.Join(c.Scopes, " ")
	}
	body, contentType, secrets, err := c.prepare("DeviceAuthURL", c.DeviceAuthURL, params, nil)
	if err != nil {
		return nil, err
	}
	var da deviceAnswer
	_, err = c.retry(ctx, "device authorization request", c.DeviceAuthURL, func() (*Token, *RetrieveError) {
		resp, data, rerr := c.post(ctx, c.DeviceAuthURL, body, contentType)
		if rerr == nil {
			wire, _ := decodeToken(data, resp.Header.Get("Content-Type"))
			rerr = failed(resp, data, wire, secrets, c.now())
		}
		if rerr == nil && (json.Unmarshal(data, &da) != nil || da.check() != nil) {
			rerr = &RetrieveError{StatusCode: resp.StatusCode, Err: errors.New("unusable answer: no device_code, user_code and verification_uri")}
		}
		if rerr != nil {
			rerr.endpoint = "device authorization endpoint"
		}
		return nil, rerr
	})
	if err != nil {
		return nil, err
	}
	if prompt != nil {
		prompt(da.UserCode, da.verificationURI(), da.VerificationURIComplete)
	}

	if da.ExpiresIn.set && da.ExpiresIn.n > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(da.ExpiresIn.n)*time.Second)
		defer cancel()
	}
	interval := 5 * time.Second
	if da.Interval.set && da.Interval.n > 0 {
		interval = time.Duration(da.Interval.n) * time.Second
	}
	grant := map[string]string{"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": da.DeviceCode}
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("bearer: waiting for the person to approve the device: %w", context.Cause(ctx))
		}
		tok, err := c.retrieve(ctx, copyParams(grant), []string{da.DeviceCode})
		var re *RetrieveError
		switch {
		case err == nil:
			return tok, nil
		case errors.As(err, &re) && re.ErrorCode == "authorization_pending":
		case errors.As(err, &re) && re.ErrorCode == "slow_down":
			interval += 5 * time.Second
		case ctx.Err() != nil:
			return nil, fmt.Errorf("bearer: waiting for the person to approve the device: %w", context.Cause(ctx))
		default:
			return nil, err
		}
		t.Reset(interval)
	}
}

// copyParams copies a grant's parameters: encode adds the client's.
func copyParams(p map[string]string) map[string]string {
	c := make(map[string]string, len(p)+2)
	for k, v := range p {
		c[k] = v
	}
	return c
}

// deviceAnswer is the device authorization endpoint's answer (RFC 8628
// section 3.2). Some servers say verification_url.
type deviceAnswer struct {
	DeviceCode              string  `json:"device_code"`
	UserCode                string  `json:"user_code"`
	VerificationURI         string  `json:"verification_uri"`
	VerificationURL         string  `json:"verification_url"`
	VerificationURIComplete string  `json:"verification_uri_complete"`
	ExpiresIn               seconds `json:"expires_in"`
	Interval                seconds `json:"interval"`
}

func (d *deviceAnswer) verificationURI() string {
	if d.VerificationURI != "" {
		return d.VerificationURI
	}
	return d.VerificationURL
}

func (d *deviceAnswer) check() error {
	if d.DeviceCode == "" || d.UserCode == "" || d.verificationURI() == "" {
		return errors.New("incomplete")
	}
	return nil
}
