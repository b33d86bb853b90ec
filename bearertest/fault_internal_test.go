package bearertest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestFaultWritersStopWhenClientLeaves checks that fault writers end when
// their client goes away, with the server still running.
func TestFaultWritersStopWhenClientLeaves(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
	}{
		{"trickle", Fault{Trickle: time.Hour}},
		{"huge body", Fault{HugeBody: 1 << 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(Config{})
			defer s.Close()
			g := s.Issue()
			s.InjectFault(tt.fault)
			body, _ := json.Marshal(map[string]string{
				"grant_type": "refresh_token", "refresh_token": g.RefreshToken,
				"client_id": DefaultClientID, "client_secret": DefaultClientSecret,
			})
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL(), bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			res, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			// The headers are here, so the writer is running.
			cancel()
			io.Copy(io.Discard, res.Body)
			res.Body.Close()

			stopped := make(chan struct{})
			go func() {
				s.writers.Wait()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("fault writer still running after its client left")
			}
		})
	}
}
