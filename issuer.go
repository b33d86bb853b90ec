package bearer

import (
	"fmt"

	"github.com/tokenkit/bearer/internal/issuer"
)

// A Token records the token endpoint and client it was issued to, so that a
// Source configured for another never sends it there: a forgotten TokenURL
// would otherwise send the refresh token and the client secret to
// DefaultTokenURL. The record is kept at rest (marshalToken) and unexported;
// internal/issuer reads it for the bearer command.

func init() {
	issuer.Of = func(t any) issuer.Record { return t.(*Token).issuer }
	issuer.Set = func(t any, r issuer.Record) { t.(*Token).issuer = r }
}

// record is the record of the tokens c obtains.
func (c *Config) record() issuer.Record {
	return issuer.Record{TokenURL: c.tokenURL(), ClientID: c.ClientID}
}

// checkIssuer refuses t when it was issued to another token endpoint or
// client than c's. A token without a record (stored before records were
// kept) passes; its successor gets c's.
func (c *Config) checkIssuer(t *Token) error {
	if !t.issuer.Known() || t.issuer.Same(c.record()) {
		return nil
	}
	return fmt.Errorf("%w: it was issued by %s to client %q, and this Source is configured for %s and client %q; nothing was sent (configure the endpoint and client it was issued to, or authorize again)",
		issuer.ErrMismatch, t.issuer.Redacted(), t.issuer.ClientID, c.record().Redacted(), c.ClientID)
}
