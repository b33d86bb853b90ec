package bearertest_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/tokenkit/bearer/bearertest"
)

// TestPrintNoSecrets: a Server, its Config and a Grant print neither the
// client secret nor a token with any fmt verb, or with slog, directly or in
// an exported field.
func TestPrintNoSecrets(t *testing.T) {
	cfg := bearertest.Config{ClientSecret: "CS-SECRET-b1"}
	srv := bearertest.NewServer(cfg)
	defer srv.Close()
	g := srv.Issue()
	values := map[string]any{
		"*Server": srv, "Config": cfg, "*Config": &cfg, "Grant": g, "*Grant": &g,
		"exported fields": struct {
			S *bearertest.Server
			C bearertest.Config
			G bearertest.Grant
		}{srv, cfg, g},
	}
	for name, v := range values {
		var out strings.Builder
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%t"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		slog.New(slog.NewTextHandler(&out, nil)).Info("v", "v", v)
		if !strings.HasPrefix(name, "exported") {
			slog.New(slog.NewJSONHandler(&out, nil)).Info("v", "v", v)
		}
		for _, s := range []string{cfg.ClientSecret, g.AccessToken, g.RefreshToken} {
			if strings.Contains(out.String(), s) {
				t.Errorf("%s printed holds %q:\n%s", name, s, out.String())
			}
		}
	}
}
