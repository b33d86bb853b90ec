package xoauth2_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/xoauth2"
	"golang.org/x/oauth2"
)

// TestPrintNoSecrets: the sources this package returns print neither the
// client secret nor a token with any fmt verb or slog handler, directly,
// through an interface, or in an unexported field, where fmt calls no
// method and a wrong verb opens the pointer it finds.
func TestPrintNoSecrets(t *testing.T) {
	const at, rt, cs = "AT-SECRET-x1", "RT-SECRET-x2", "CS-SECRET-x3"
	src := bearer.NewSource(bearer.Config{ClientSecret: cs}, bearer.NewMemoryStore(&bearer.Token{AccessToken: at, RefreshToken: rt}))
	defer src.Close()
	to := xoauth2.TokenSource(t.Context(), src)
	from := xoauth2.FromOAuth2(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at, RefreshToken: rt}))
	values := map[string]any{
		"TokenSource":       to,
		"FromOAuth2":        from,
		"unexported fields": struct{ to, from any }{to, from},
	}
	for name, v := range values {
		var out strings.Builder
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%t", "%p"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		slog.New(slog.NewTextHandler(&out, nil)).Info("v", "v", v)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("v", "v", v)
		for _, s := range []string{at, rt, cs} {
			if strings.Contains(out.String(), s) {
				t.Errorf("%s printed holds %q:\n%s", name, s, out.String())
			}
		}
	}
}
