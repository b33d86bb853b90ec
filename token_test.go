package bearer

import (
	"testing"
	"time"
)

func TestTokenValid(t *testing.T) {
	now := epNow
	tests := []struct {
		name string
		tok  *Token
		want bool
	}{
		{"nil", nil, false},
		{"empty", &Token{}, false},
		{"no expiry", &Token{AccessToken: "a"}, true},
		{"future", &Token{AccessToken: "a", Expiry: now.Add(time.Second)}, true},
		{"now", &Token{AccessToken: "a", Expiry: now}, false},
		{"past", &Token{AccessToken: "a", Expiry: now.Add(-time.Second)}, false},
		{"refresh only", &Token{RefreshToken: "r"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tok.Valid(now); got != tt.want {
				t.Errorf("Valid() = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestEncodingName(t *testing.T) {
	tests := []struct {
		e    Encoding
		want string
	}{
		{JSON, "json"},
		{Form, "form"},
		{Encoding(7), "Encoding(7)"},
	}
	for _, tt := range tests {
		if got := encodingName(tt.e); got != tt.want {
			t.Errorf("encodingName(%d) = %q, want %q", int(tt.e), got, tt.want)
		}
	}
}

func TestUnknownEncoding(t *testing.T) {
	cfg, mt := epConfig(epJSON(200, epTokenBody))
	cfg.Encoding = Encoding(9)
	if _, err := cfg.refreshGrant(t.Context(), "rt-old"); err == nil {
		t.Errorf("refreshGrant with Encoding(9) = nil error, want one")
	}
	if n := mt.GetTotalCallCount(); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}

// "bearer" in any case is sent as RFC 6750's "Bearer"; other schemes as
// the server named them.
func TestTokenTypeCanonical(t *testing.T) {
	for typ, want := range map[string]string{"": "Bearer", "bearer": "Bearer", "BEARER": "Bearer", "Bearer": "Bearer", "DPoP": "DPoP"} {
		if got := (&Token{TokenType: typ}).scheme(); got != want {
			t.Errorf("Token{TokenType: %q}.scheme() = %q, want %q", typ, got, want)
		}
	}
}
