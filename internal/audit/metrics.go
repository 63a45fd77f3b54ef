package audit

import "github.com/prometheus/client_golang/prometheus"

// Label values of llmgate_audit_dropped_total and
// llmgate_audit_webhook_deliveries_total.
const (
	queueStore   = "store"
	queueWebhook = "webhook"

	resultOK      = "ok"
	resultFailed  = "failed"
	resultRetried = "retried"
)

// metrics are one Log's counters. Labels never hold an email or a URL;
// the type label is one of knownTypes or "other".
type metrics struct {
	events     *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	deliveries *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_audit_events_total",
			Help: "Audit events recorded, by type (types outside the known list count as \"other\").",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_audit_dropped_total",
			Help: "Audit events not stored in Redis (queue=\"store\") or not handed to the webhook (queue=\"webhook\") because the queue was full, Redis refused the write, or the process was shutting down.",
		}, []string{"queue"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llmgate_audit_webhook_deliveries_total",
			Help: "Audit webhook POSTs: ok = delivered (2xx), failed = given up, retried = an attempt failed and another was scheduled.",
		}, []string{"result"}),
	}
	// Every series exists from the start, so dashboards and alerts see 0
	// rather than nothing.
	for _, t := range knownTypes {
		m.events.WithLabelValues(t)
	}
	m.events.WithLabelValues(otherType)
	m.dropped.WithLabelValues(queueStore)
	m.dropped.WithLabelValues(queueWebhook)
	m.deliveries.WithLabelValues(resultOK)
	m.deliveries.WithLabelValues(resultFailed)
	m.deliveries.WithLabelValues(resultRetried)
	return m
}

// Collectors returns the Log's metrics for the caller to register:
// llmgate_audit_events_total{type}, llmgate_audit_dropped_total{queue} and
// llmgate_audit_webhook_deliveries_total{result}.
func (l *Log) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.m.events, l.m.dropped, l.m.deliveries}
}
