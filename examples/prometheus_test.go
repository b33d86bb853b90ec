package examples_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenkit/bearer"
	"github.com/tokenkit/bearer/bearertest"
)

// Prometheus: counters and a histogram fed by Config.Hooks, for what needs
// labels or durations, and CounterFunc and GaugeFunc metrics that read
// Source.Stats at scrape time, for what needs no wiring. Serve reg with
// promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).
func Example_prometheus() {
	srv := bearertest.NewServer(bearertest.Config{})
	defer srv.Close()

	reg := prometheus.NewRegistry()
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bearer_refreshes_total",
		Help: "Token requests, by result (ok or error).",
	}, []string{"result"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bearer_refresh_duration_seconds",
		Help:    "How long token requests took, retries included.",
		Buckets: prometheus.DefBuckets,
	})
	rejected := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bearer_tokens_rejected_total",
		Help: "Access tokens the API rejected (401) before they expired.",
	})
	reauthorize := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bearer_reauthorize_total",
		Help: "Refreshes refused for good: a person must authorize the app again.",
	})
	reg.MustRegister(refreshes, duration, rejected, reauthorize)

	src, _ := newSource(srv, bearer.Config{
		Hooks: bearer.Hooks{
			RefreshFinished: func(_ context.Context, d time.Duration, err error) {
				result := "ok"
				if err != nil {
					result = "error"
				}
				refreshes.WithLabelValues(result).Inc()
				duration.Observe(d.Seconds())
			},
			TokenRejected: func(context.Context) { rejected.Inc() },
			Reauthorize:   func(context.Context, error) { reauthorize.Inc() },
		},
		// Warnings (failed refreshes and saves) to the log; never a secret.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	defer src.Close()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bearer_adopted_total",
			Help: "Tokens taken from the store, refreshed by another process.",
		}, func() float64 { return float64(src.Stats().Adopted) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bearer_save_failures_total",
			Help: "Failed saves of a new token to the store.",
		}, func() float64 { return float64(src.Stats().SaveFailures) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bearer_last_refresh_timestamp_seconds",
			Help: "When the last successful token request ended, in Unix time.",
		}, func() float64 {
			t := src.Stats().LastRefresh
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
	)

	client := &http.Client{Transport: &bearer.Transport{Source: src, Base: srv.Client().Transport}}
	get(client, srv.APIURL()+"hello") // refreshes the expired token
	tok, _ := src.Token(context.Background())
	srv.RevokeAccess(tok.AccessToken)
	get(client, srv.APIURL()+"hello") // 401, refresh, resend

	families, err := reg.Gather()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			switch {
			case m.GetCounter() != nil:
				fmt.Println(name, m.GetCounter().GetValue())
			case m.GetHistogram() != nil:
				fmt.Println(name, "count", m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				fmt.Println(name, "set:", m.GetGauge().GetValue() > 0)
			}
		}
	}
	// Output:
	// bearer_adopted_total 0
	// bearer_last_refresh_timestamp_seconds set: true
	// bearer_reauthorize_total 0
	// bearer_refresh_duration_seconds count 2
	// bearer_refreshes_total{result="ok"} 2
	// bearer_save_failures_total 0
	// bearer_tokens_rejected_total 1
}
